"""Super-resolution: y = D x + n, D the MATLAB-style bicubic antialiased downsampling of the DPS paper."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Self

import torch
import torch.nn.functional as F
from torch import Tensor

from dps_exp.config import Range
from dps_exp.physics.base import LinearPhysics
from dps_exp.physics.noise import Noise
from dps_exp.physics.resize import resize_matrix
from dps_exp.physics.svd import Factor, Separable


@lru_cache(maxsize=32)
def resize_factor(n: int, scale: float) -> Factor:
    """The float64 SVD of `resize_matrix(n, scale)`, computed once per side and scale (the operator is rebuilt for
    each batch)."""
    return Factor.of(resize_matrix(n, scale))


class SuperResolution(LinearPhysics):
    """Downsampling by `factor` as MATLAB's `imresize(x, 1/factor)` (bicubic, antialiased; physics/resize.py, the
    paper's resizer), as a matrix per image side: a 256 px image becomes 64 px at factor 4 (the paper's setting).

    Per channel, with the resize matrices R_H (h, H) and R_W (w, W):
        A x   = R_H X R_Wᵀ
        A_T y = R_Hᵀ Y R_W                  (the exact adjoint; the official code's `transpose` is a nearest
                                             upsampling instead, which is not)
        A⁺ y  = R_H⁺ Y R_W⁺ᵀ                (the exact Moore–Penrose pseudo-inverse: A = R_H ⊗ R_W)
        svd   = the Kronecker product of the float64 SVDs of R_H and R_W (physics/svd.py, `Separable`)

    Args:
        factor: downsampling factor; the measurement has ⌈size / factor⌉ pixels a side. Paper: 4 (256 → 64 px)
    """

    exact_pinv = True

    def __init__(self, factor: Annotated[float, Range(1, None)] = 4, noise: Noise | None = None):
        super().__init__(noise or Noise())
        self.factor = factor
        self.in_size: tuple[int, int] | None = None
        self._cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    def draw(self, shape: Sequence[int], gens: Sequence[torch.Generator], device: torch.device) -> Self:
        """Nothing random; remembers the image size for `A_T`, `init` and `to_image`."""
        self.in_size = (shape[-2], shape[-1])
        return self

    def matrices(self, size: Sequence[int], like: Tensor, pinv: bool = False) -> tuple[Tensor, Tensor]:
        """(R_H, R_W), or their pseudo-inverses, for images of `size` (H, W), on like's device and dtype."""
        key = (*size, pinv, like.dtype, like.device)
        if key not in self._cache:
            Rs = [resize_matrix(n, 1 / self.factor) for n in size]
            if pinv:
                Rs = [torch.linalg.pinv(R) for R in Rs]
            self._cache[key] = tuple(R.to(like) for R in Rs)
        return self._cache[key]

    def A(self, x: Tensor) -> Tensor:
        R_h, R_w = self.matrices(x.shape[-2:], x)
        return R_h @ x @ R_w.T

    def A_T(self, y: Tensor) -> Tensor:
        R_h, R_w = self.matrices(self.in_size, y)
        return R_h.T @ y @ R_w

    def init(self, y: Tensor) -> Tensor:
        P_h, P_w = self.matrices(self.in_size, y, pinv=True)
        return P_h @ y @ P_w.T

    def svd(self) -> Separable:
        """The same for every sample (nothing is drawn), on the CPU."""
        return Separable(*(resize_factor(n, 1 / self.factor) for n in self.in_size))

    def to_image(self, y: Tensor) -> Tensor:
        """The low-resolution measurement blown up with nearest neighbours to the image size."""
        return F.interpolate(y, size=self.in_size, mode="nearest")
