"""Blurs: reflect padding, then each colour channel correlated with the sample's kernel (the official code's
`Blurkernel`: nn.ReflectionPad2d(k // 2) and a grouped nn.Conv2d, i.e. cross-correlation)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Literal, Self

import torch
import torch.nn.functional as F
from torch import Tensor

from dps_exp import batch
from dps_exp.config import PER_SAMPLE, Range
from dps_exp.errors import ConfigError
from dps_exp.physics.base import LinearPhysics
from dps_exp.physics.motion import MIN_KERNEL, motion_kernel
from dps_exp.physics.noise import Noise
from dps_exp.physics.svd import Factor, Separable

FFT_FROM = 17
"""`method=auto` convolves by FFT from this kernel size up. Measured with scripts/bench_blur.py on this project's
shared 2-core CPU at 256×256, forward plus backward, best of 10: up to 15 px the two paths are about even
(direct ahead at batch 4), at 31 px the FFT is 2–17× faster and at 61 px (the paper's) 7–35× faster."""


def reflect_index(n: int, pad: int, device: torch.device) -> Tensor:
    """Source index of each of the n + 2·pad padded positions: reflection without repeating the edge pixel
    (torch's and the official code's `reflect`), repeated as often as the padding needs."""
    m = (torch.arange(-pad, n + pad, device=device)) % (2 * n - 2)
    return torch.where(m < n, m, 2 * n - 2 - m)


def blur_matrix(g: Tensor, n: int) -> Tensor:
    """The (B, n, n) matrices of "reflect-pad by k // 2, then correlate with g" along one side of n pixels, for 1-D
    kernels g (B, k): M[i, r(i + u)] += g[u], r the padded positions' sources (`reflect_index`). A kernel that is
    an outer product, k = g_H g_Wᵀ, blurs each channel X as M_H X M_Wᵀ."""
    B, k = g.shape
    sources = reflect_index(n, k // 2, g.device)
    cols = sources[torch.arange(n, device=g.device)[:, None] + torch.arange(k, device=g.device)]  # (n, k)
    M = g.new_zeros(B, n, n)
    return M.scatter_add_(2, cols.expand(B, n, k), g[:, None, :].expand(B, n, k))


def fast_size(n: int) -> int:
    """The smallest m ≥ n whose only prime factors are 2, 3 and 5 (fast FFT lengths)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


class Blur(LinearPhysics):
    """y = k_b ⋆ P(x) + n per sample b and channel, P the reflect padding by k // 2 on each side:

        A x  [i, j] = Σ_{u,v} P(x)[i + u, j + v] k[u, v]         (cross-correlation: the image keeps its size)
        A_T y       = Pᵀ(k ∗ y)                                   (full convolution, then the padded border
                                                                   folded back onto the pixels it copied)
        init y      = y                                           (the blurred image; no cheap exact A⁺)

    method: `direct` (torch's grouped conv2d), `fft` (the same sums by FFT, exact: the transform is long
    enough that nothing wraps around) or `auto` (FFT from FFT_FROM pixels up). Kernels are (B, 1, k, k),
    float64 on the CPU when drawn, saved with each result.

    Args:
        kernel_size: kernel window side in pixels, odd. Paper: 61
        method: `direct` (grouped conv2d), `fft` (same sums, exact) or `auto`: FFT from 17 px up (at 61 px it is 7–35×
            faster on a 2-core CPU, `scripts/bench_blur.py`)
    """

    def __init__(self, kernel_size: int, method: str, noise: Noise | None):
        super().__init__(noise or Noise())
        if kernel_size % 2 == 0:
            raise ConfigError(f"physics.kernel_size={kernel_size} is not allowed: it must be odd")
        self.kernel_size, self.method = kernel_size, method
        self.k: Tensor | None = None
        self.in_size: tuple[int, int] | None = None
        self._plan: tuple | None = None
        self._svd: Separable | None = None

    def kernels(self, batch_size: int, gens: Sequence[torch.Generator]) -> Tensor:
        """The (B, k, k) float64 kernels of a batch, sample b's from gens[b] where random."""
        raise NotImplementedError

    def draw(self, shape: Sequence[int], gens: Sequence[torch.Generator], device: torch.device) -> Self:
        self.k = self.kernels(shape[0], gens)[:, None].to(device)
        self.in_size = (shape[-2], shape[-1])
        self._plan, self._svd = None, None
        return self

    def use_fft(self) -> bool:
        return self.method == "fft" or (self.method == "auto" and self.kernel_size >= FFT_FROM)

    def plan(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor, tuple[int, int]]:
        """Padding indices, the kernel as `like`'s operand (its spectrum for the FFT, else the grouped conv
        weight) and the FFT size: computed once per image shape, since A and A_T run at every DPS step."""
        B, C, H, W = like.shape
        key = (C, H, W, like.dtype, like.device)
        if self._plan is None or self._plan[0] != key:
            p = self.kernel_size // 2
            rows, cols = reflect_index(H, p, like.device), reflect_index(W, p, like.device)
            k = self.k.to(like.dtype)
            size = (fast_size(len(rows)), fast_size(len(cols)))
            kernel = torch.fft.rfft2(k, s=size) if self.use_fft() else k.repeat_interleave(C, dim=0)
            self._plan = (key, rows, cols, kernel, size)
        return self._plan[1:]

    def A(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        rows, cols, kernel, size = self.plan(x)
        padded = x.index_select(-2, rows).index_select(-1, cols)
        if self.use_fft():
            spectrum = torch.fft.rfft2(padded, s=size) * kernel.conj()
            return torch.fft.irfft2(spectrum, s=size)[..., :H, :W]
        return F.conv2d(padded.reshape(1, B * C, *padded.shape[-2:]), kernel, groups=B * C).view(B, C, H, W)

    def A_T(self, y: Tensor) -> Tensor:
        B, C, H, W = y.shape
        rows, cols, kernel, size = self.plan(y)
        if self.use_fft():
            spectrum = torch.fft.rfft2(y, s=size) * kernel
            full = torch.fft.irfft2(spectrum, s=size)[..., : len(rows), : len(cols)]
        else:
            full = F.conv_transpose2d(y.reshape(1, B * C, H, W), kernel, groups=B * C).view(B, C, len(rows), -1)
        folded = y.new_zeros(B, C, H, len(cols)).index_add(-2, rows, full)
        return y.new_zeros(B, C, H, W).index_add(-1, cols, folded)

    def init(self, y: Tensor) -> Tensor:
        return y

    def state(self) -> dict[str, Tensor]:
        return {"kernel": self.k}


class GaussianBlur(Blur):
    """Reflect padding by kernel_size // 2, then each channel convolved with a Gaussian kernel of standard deviation
    `std` pixels in a `kernel_size` window (scipy's `gaussian_filter` of a delta: cut at 4 std, summing to 1; the
    paper: 61×61, std 3).

    It is the kernel the official code gets from scipy.ndimage.gaussian_filter on a centred delta: outer(g, g)
    with g_t ∝ exp(−t² / 2σ²) for |t| ≤ ⌊4σ + ½⌋ (scipy's truncate = 4), zero beyond, summing to 1. A std whose
    4σ exceeds the window is cut by it and renormalised.

    Separable, so it has an exact SVD: each channel X is blurred as M_H X M_Wᵀ, M the 1-D "reflect-pad, then
    correlate with g" matrix of each side (`blur_matrix`), and `svd` is the Kronecker product of their SVDs.

    Args:
        std: standard deviation in pixels. Paper: 3.0
    """

    def __init__(
        self,
        std: Annotated[float, Range(0, None, lo_open=True), PER_SAMPLE] = 3.0,
        kernel_size: Annotated[int, Range(1, None)] = 61,
        method: Literal["auto", "direct", "fft"] = "auto",
        noise: Noise | None = None,
    ):
        super().__init__(kernel_size, method, noise)
        self.std = std

    def profile(self, batch_size: int) -> Tensor:
        """The (B, k) float64 1-D kernels g; the 2-D kernel is their outer product g gᵀ."""
        return gaussian_profile(torch.as_tensor(self.std, dtype=torch.float64).expand(batch_size), self.kernel_size)

    def kernels(self, batch_size: int, gens: Sequence[torch.Generator]) -> Tensor:
        g = self.profile(batch_size)
        return g[:, :, None] * g[:, None, :]

    def svd(self) -> Separable:
        """The float64 SVDs of the 1-D matrices, one per sample (one for the batch when `std` is one number)."""
        if self._svd is None:
            stds = torch.as_tensor(self.std, dtype=torch.float64).reshape(-1).tolist()
            rows, cols = (
                Factor.cat([gaussian_factor(std, self.kernel_size, n) for std in stds]).to(self.k) for n in self.in_size
            )
            self._svd = Separable(rows, cols)
        return self._svd


def gaussian_profile(std: Tensor, kernel_size: int) -> Tensor:
    """The (B, k) float64 1-D Gaussian kernels of standard deviations std (B,): scipy's, cut at 4 std, summing to 1."""
    std = std[:, None]
    t = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    g = torch.exp(-(t**2) / (2 * std**2)) * (t.abs() <= torch.floor(4 * std + 0.5))
    return g / g.sum(dim=1, keepdim=True)


@lru_cache(maxsize=32)
def gaussian_factor(std: float, kernel_size: int, n: int) -> Factor:
    """The float64 SVD of one side's blur matrix (`blur_matrix`). Cached: each batch draws its operator anew, and this
    SVD is slow (at 256 px, std 3, about 7 times a random matrix's: its singular values span 7 decades)."""
    return Factor.of(blur_matrix(gaussian_profile(torch.tensor([std], dtype=torch.float64), kernel_size), n))


class MotionBlur(Blur):
    """The Gaussian blur's convolution with a random-trajectory kernel instead: our implementation (physics/motion.py)
    of the `motionblur` generator the paper used, 61×61 at intensity 0.5 in the paper.

    kernel_per `image`: each image's kernel is drawn from its own operator stream (run seed, image index), so
    it repeats for the same seed and differs between images. `run`: one kernel for the whole run, drawn from
    `kernel_seed`, as the official code does (it draws one per run); it does not follow `seed`, which a
    sweep may pack into a list (one value per sample).

    Args:
        intensity: trajectory irregularity (0: a straight segment; longer, bent paths as it grows). Paper: 0.5
        kernel_size: kernel window side in pixels, odd, at least 55 (the package's law draws a line 0 px wide in a
            smaller one). Paper: 61
        kernel_per: `image`: a kernel per image, from its seed and index; `run`: one kernel for every image, as the
            official code
        kernel_seed: the seed of the one kernel when `kernel_per=run`; independent of `seed`, so a seed sweep varies
            the sampling noise over one operator
    """

    def __init__(
        self,
        intensity: Annotated[float, Range(0, 1), PER_SAMPLE] = 0.5,
        kernel_size: Annotated[int, Range(MIN_KERNEL, None)] = 61,
        kernel_per: Literal["image", "run"] = "image",
        kernel_seed: Annotated[int, Range(0, None)] = 0,
        method: Literal["auto", "direct", "fft"] = "auto",
        noise: Noise | None = None,
    ):
        super().__init__(kernel_size, method, noise)
        self.intensity, self.kernel_per, self.kernel_seed = intensity, kernel_per, kernel_seed

    def kernels(self, batch_size: int, gens: Sequence[torch.Generator]) -> Tensor:
        intensity = torch.as_tensor(self.intensity, dtype=torch.float64).expand(batch_size).tolist()
        if self.kernel_per == "run":
            gens = batch.generators([self.kernel_seed] * batch_size, [0] * batch_size, "motion_kernel")
        return torch.stack([motion_kernel(self.kernel_size, i, g) for i, g in zip(intensity, gens, strict=True)])
