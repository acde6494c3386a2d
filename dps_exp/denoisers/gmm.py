"""A Gaussian-mixture image prior whose MMSE denoiser, and posterior under any linear-Gaussian measurement,
are exact: a test bed that says how far DPS samples fall from the true posterior."""

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


class GaussianMixture(Denoiser, ExactPrior):
    """x0 ~ Σ_k π_k N(μ_k, Σ_k) over small images (C, H, W) = (`channels`, `image_size`, `image_size`), flattened to d
    = C·H·W dimensions, on the [-1, 1] scale, with its exact MMSE denoiser E[x0 | x_t] at every t and an exact
    posterior: the test bed that says how far DPS samples are from the true posterior (docs/priors.md).

    Drawn from `seed` unless given: μ_k ~ N(0, mean_scale² I); Σ_k = U_k diag(λ) U_kᵀ with U_k a random
    rotation and λ_i ∝ (i + 1)^(−decay), scaled so a pixel's mean variance is std² (decay 0: isotropic; larger:
    strongly correlated pixels, a few directions carrying most of the variance); π uniform. The defaults keep
    ~99.5% of pixel values inside [-1, 1], where DPS clips x̂0. `means` (K × d), `covariances` (K × d × d,
    symmetric positive semi-definite) and `weights` (K, summing to 1) set them explicitly instead.

    With Σ_k = U_k Λ_k U_kᵀ every timestep is cheap: given x_t = √ᾱ x0 + √(1−ᾱ) ε, component k has
    x_t ~ N(√ᾱ μ_k, U_k (ᾱΛ_k + (1−ᾱ) I) U_kᵀ), and with z_k = U_kᵀ (x_t − √ᾱ μ_k)

        E[x0 | x_t] = Σ_k w_k(x_t) (μ_k + U_k · √ᾱ Λ_k / (ᾱ Λ_k + 1 − ᾱ) · z_k),   w_k ∝ π_k N(x_t; …)

    (responsibilities by log-sum-exp). Float64 inside, float32 out. `schedule` is supplied by the run; the
    default (the linear schedule) serves when the prior is built only to draw ground truth.

    Args:
        channels: C
        image_size: H = W; the dimension is d = C·H·W
        components: K
        seed: seeds the means, the covariance rotations (Haar) and nothing else
        mean_scale: component means ~ N(0, mean_scale²) per pixel, [-1, 1] scale
        std: mean per-pixel std within a component
        decay: covariance eigenvalues ∝ (i + 1)^−decay: 0 isotropic, larger more correlated pixels
        weights: K mixture weights, ≥ 0, summing to 1 (null: uniform)
        means: K × d explicit means (null: drawn)
        covariances: K × d × d explicit covariances, symmetric positive semi-definite (null: drawn)
    """

    def __init__(
        self,
        schedule: Schedule,
        channels: Annotated[int, Range(1, 3)] = 1,
        image_size: Annotated[int, Range(1, 16)] = 8,
        components: Annotated[int, Range(1, 64)] = 4,
        seed: Annotated[int, Range(0, None)] = 0,
        mean_scale: Annotated[float, Range(0, None)] = 0.3,
        std: Annotated[float, Range(0, None, lo_open=True)] = 0.2,
        decay: Annotated[float, Range(0, 4)] = 1.0,
        weights: Sequence[float] | None = None,
        means: Sequence[Sequence[float]] | None = None,
        covariances: Sequence[Sequence[Sequence[float]]] | None = None,
    ):
        super().__init__(schedule)
        self.shape = (channels, image_size, image_size)
        self.channels = channels
        d, K = channels * image_size**2, components
        gen = torch.Generator().manual_seed(seed)
        f64 = torch.float64
        mu = torch.randn(K, d, generator=gen, dtype=f64) * mean_scale
        Q, R = torch.linalg.qr(torch.randn(K, d, d, generator=gen, dtype=f64))
        U = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)  # Haar-distributed rotations
        lam = (torch.arange(1, d + 1, dtype=f64) ** -decay).expand(K, d)
        lam = lam * (d * std**2 / lam.sum(-1, keepdim=True))
        pi = torch.full((K,), 1.0 / K, dtype=f64)
        if means is not None:
            mu = self._explicit("means", means, (K, d))
        if covariances is not None:
            cov = self._explicit("covariances", covariances, (K, d, d))
            if not torch.allclose(cov, cov.mT, atol=1e-10):
                raise ConfigError("denoiser.covariances must be symmetric")
            lam, U = torch.linalg.eigh(cov)
            if bool((lam < -1e-10 * lam.abs().amax()).any()):
                raise ConfigError("denoiser.covariances must be positive semi-definite")
            lam = lam.clamp_min(0.0)
        if weights is not None:
            pi = self._explicit("weights", weights, (K,))
            if bool((pi < 0).any()) or abs(float(pi.sum()) - 1) > 1e-6:
                raise ConfigError("denoiser.weights must be ≥ 0 and sum to 1")
        self.register_buffer("mu", mu)  # (K, d)
        self.register_buffer("U", U.contiguous())  # (K, d, d), columns are eigenvectors
        self.register_buffer("lam", lam.contiguous())  # (K, d), eigenvalues of Σ_k
        self.register_buffer("log_pi", pi.log())  # (K,)
        self.register_buffer("mu_rotated", torch.einsum("kd,kde->ke", mu, U), persistent=False)  # U_kᵀ μ_k, (K, d)

    @staticmethod
    def _explicit(key: str, value, shape: tuple[int, ...]) -> Tensor:
        t = torch.as_tensor(value, dtype=torch.float64)
        if tuple(t.shape) != shape:
            raise ConfigError(f"denoiser.{key} has shape {tuple(t.shape)}; components and d = C·H·W need {shape}")
        return t

    def mixture(self, shape: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """The prior as (weights (K,), means (K, d), covariances (K, d, d)), float64, for images of `shape`
        (C, H, W): the exact-prior protocol (dps_exp.denoisers.exact.ExactPrior)."""
        if tuple(shape) != self.shape:
            raise ConfigError(f"the GMM prior is defined on images {self.shape}, not {tuple(shape)}")
        cov = self.U @ (self.lam.unsqueeze(-1) * self.U.mT)
        return self.log_pi.exp(), self.mu, cov

    def forward(self, x_t: Tensor, t: Tensor) -> Prediction:
        if tuple(x_t.shape[1:]) != self.shape:
            raise ConfigError(f"the GMM prior is defined on images {self.shape}, not {tuple(x_t.shape[1:])}")
        x = x_t.flatten(1).double()  # (B, d)
        ab = self.alphas_cumprod[t].double().view(-1, 1, 1)  # (B, 1, 1)
        # z_k = U_kᵀ (x_t − √ᾱ μ_k), shape (B, K, d); var = eigenvalues of the covariance of x_t given k
        z = torch.einsum("bd,kde->bke", x, self.U) - ab.sqrt() * self.mu_rotated
        var = ab * self.lam + (1 - ab)
        log_w = self.log_pi - 0.5 * ((z**2 / var) + var.log()).sum(-1)  # (B, K), up to a constant
        w = torch.softmax(log_w, dim=-1)
        m = self.mu + torch.einsum("bke,kde->bkd", ab.sqrt() * self.lam / var * z, self.U)  # (B, K, d)
        x0 = torch.einsum("bk,bkd->bd", w, m).view_as(x_t).to(x_t.dtype)
        return Prediction(eps=self.eps_from_x0(x_t, t, x0), x0=x0)
