"""A stationary Gaussian image prior whose posterior-mean denoiser is exact and costs two FFTs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor

from dps_exp.config import Range
from dps_exp.denoisers.base import Denoiser, Prediction
from dps_exp.denoisers.exact import ExactPrior
from dps_exp.errors import ConfigError
from dps_exp.schedule import Schedule


class StationaryGaussian(Denoiser, ExactPrior):
    """x0 ~ N(μ, Σ_c ⊗ K), a stationary (periodic) Gaussian field with power spectrum ∝ (|k|² + k0²)^(−α/2) and
    correlated colours. Its posterior-mean denoiser is exact (a Wiener filter by FFT), so it needs no weights and runs
    at any size; its exact posterior is known too (`dps_exp.denoisers.exact`).

    Σ_c = std² · ((1 − ρ) I + ρ 11ᵀ) is the colour covariance (ρ = `color_correlation`); K is circulant with
    unit diagonal and eigenvalues (power spectrum) P(k) ∝ (|k|² + k0²)^(−α/2) over the integer frequencies k
    of the image grid. Rotating colours into Σ_c's eigenbasis U (orthogonal, so the diffusion noise stays
    white) leaves independent channels with spectra λ_j P(k), and the posterior mean given
    x_t = √ᾱ x0 + √(1−ᾱ) ε is a Wiener filter per rotated channel:

        E[x0 | x_t] = μ + U F⁻¹[ √ᾱ λ_j P / (ᾱ λ_j P + 1 − ᾱ) · F(Uᵀ(x_t − √ᾱ μ)) ]

    It needs no weights, runs at any size, and its exact posterior is known: a test bed for DPS. The
    defaults are fitted roughly to natural photographs on the [-1, 1] scale.

    Args:
        alpha: power-spectrum exponent α (natural images: 2–3.5)
        std: marginal std of a pixel on the [-1, 1] scale
        color_correlation: correlation ρ between any two channels
        mean: per-channel mean on the [-1, 1] scale
        cutoff: k0 in cycles per image: flattens the spectrum below it
    """

    def __init__(
        self,
        schedule: Schedule,
        alpha: Annotated[float, Range(0, 6)] = 3.0,
        std: Annotated[float, Range(0, None, lo_open=True)] = 0.5,
        color_correlation: Annotated[float, Range(-0.5, 1, lo_open=True, hi_open=True)] = 0.8,
        mean: Sequence[float] = (0.0, -0.15, -0.25),
        cutoff: Annotated[float, Range(0, None, lo_open=True)] = 1.0,
    ):
        super().__init__(schedule)
        self.alpha, self.cutoff = alpha, cutoff
        self.channels = channels = len(mean)
        rho = color_correlation
        cov = std**2 * ((1 - rho) * torch.eye(channels, dtype=torch.float64) + rho)
        lam, U = torch.linalg.eigh(cov)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("color_cov", cov.float())
        self.register_buffer("U", U.float())
        self.register_buffer("lam", lam.float().view(1, -1, 1, 1))
        self._variances: dict[tuple, Tensor] = {}

    def variances(self, height: int, width: int, device: torch.device) -> Tensor:
        """λ_j P on the rfft2 grid, float32 on `device`: made once per image size and device, since the
        denoiser runs at every DPS step (and a copy from the host there would make the host wait)."""
        key = (height, width, device)
        if key not in self._variances:
            self._variances[key] = self.lam.to(device) * self.spectrum(height, width).to(device, torch.float32)
        return self._variances[key]

    def spectrum(self, height: int, width: int) -> Tensor:
        """Eigenvalues P of the unit-diagonal circulant K on the rfft2 grid, (H, W//2+1), float64 on CPU.

        mean_k P(k) over the full grid is 1: every pixel's marginal variance under K is 1.
        """
        ky = torch.fft.fftfreq(height, d=1 / height, dtype=torch.float64).view(-1, 1)
        kx = torch.fft.fftfreq(width, d=1 / width, dtype=torch.float64).view(1, -1)
        full = (ky**2 + kx**2 + self.cutoff**2) ** (-self.alpha / 2)
        full = full * (height * width / full.sum())
        return full[:, : width // 2 + 1]

    def mixture(self, shape: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """The prior as a one-component mixture (weights (1,), means (1, d), covariances (1, d, d)), float64,
        for images of `shape` (C, H, W), d = C·H·W; for the exact posterior (dps_exp.denoisers.exact).

        Σ = Σ_c ⊗ K with K[p, q] = k((p − q) mod grid), k = F⁻¹P the circulant's first row.
        """
        c, h, w = shape
        if c != self.channels:
            raise ConfigError(f"the Gaussian prior has {self.channels} channels, not {c}")
        row = torch.fft.irfft2(self.spectrum(h, w), s=(h, w))  # real: P is symmetric
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        K = row[(ys[:, None] - ys[None, :]) % h, (xs[:, None] - xs[None, :]) % w]
        cov = torch.kron(self.color_cov.double().cpu(), K)
        mean = self.mean.double().cpu().expand(1, c, h, w).reshape(1, -1)
        return torch.ones(1, dtype=torch.float64), mean, cov[None]

    def rotate(self, x: Tensor, inverse: bool = False) -> Tensor:
        """Colours into (Uᵀ x) or, inverse, out of (U z) the eigenbasis of Σ_c."""
        return torch.einsum("ij,bjhw->bihw", self.U if inverse else self.U.T, x)

    def forward(self, x_t: Tensor, t: Tensor) -> Prediction:
        ab = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        P = self.variances(x_t.shape[-2], x_t.shape[-1], x_t.device)
        gain = ab.sqrt() * P / (ab * P + (1 - ab))
        z = self.rotate(x_t - ab.sqrt() * self.mean)
        z0 = torch.fft.irfft2(torch.fft.rfft2(z) * gain, s=x_t.shape[-2:])
        x0 = self.mean + self.rotate(z0, inverse=True)
        return Prediction(eps=self.eps_from_x0(x_t, t, x0), x0=x0)
