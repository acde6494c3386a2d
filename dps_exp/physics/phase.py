"""Fourier phase retrieval: y = |F P x| + n, the magnitude of the 2-D DFT of the zero-padded image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Self

import torch
import torch.nn.functional as F
from torch import Tensor

from dps_exp.config import Range
from dps_exp.physics.base import Physics
from dps_exp.physics.noise import Noise


class PhaseRetrieval(Physics):
    """y = |F P x| + n, the magnitude of the orthonormal 2-D FFT (zero frequency centred) of the [-1, 1] image
    zero-padded by P; non-linear (no adjoint). The paper scores the best of 4 samples per image for this task.

    As the official code's `PhaseRetrievalOperator` (guided_diffusion/measurements.py):

        A x = |fftshift(F_ortho P x)|     per channel, on the [-1, 1] image as it is (no shift to [0, 1])

    P zero-pads each side by ⌊(oversample / 8) · size⌋ pixels (64 at 256 px for the paper's oversample = 2.0;
    the official code hard-codes size = 256, here it is the image's side), F_ortho is the orthonormal DFT
    (fastMRI's centred `fft2c`; the centring only moves the phase, so |·| is the same) and fftshift puts the
    zero frequency in the middle. Non-linear: no adjoint. Its 4 samples per image, scored best-of, belong to the
    experiment, not to the operator.

    Args:
        oversample: padding of ⌊oversample / 8 · size⌋ pixels on each side. Paper: 2.0 (64 px at 256: 256 → 384)
    """

    def __init__(self, oversample: Annotated[float, Range(0, None)] = 2.0, noise: Noise | None = None):
        super().__init__(noise or Noise())
        self.oversample = oversample
        self.in_size: tuple[int, int] | None = None

    def draw(self, shape: Sequence[int], gens: Sequence[torch.Generator], device: torch.device) -> Self:
        """Nothing random; remembers the image size for `to_image`."""
        self.in_size = (shape[-2], shape[-1])
        return self

    def padding(self, H: int, W: int) -> tuple[int, int, int, int]:
        ph, pw = int(self.oversample / 8 * H), int(self.oversample / 8 * W)
        return (pw, pw, ph, ph)

    def A(self, x: Tensor) -> Tensor:
        padded = F.pad(x, self.padding(*x.shape[-2:]))
        return torch.fft.fftshift(torch.fft.fft2(padded, norm="ortho"), dim=(-2, -1)).abs()

    def to_image(self, y: Tensor) -> Tensor:
        """log10 |F P x|, over the 4 decades below each image's largest value mapped to [-1, 1], resized to the
        image size (for pictures only)."""
        v = torch.log10(y.clamp_min(1e-30))
        top = v.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        v = ((v - top) / 4 + 1).clamp(0, 1)
        return F.interpolate(v, size=self.in_size, mode="bilinear", antialias=True) * 2 - 1
