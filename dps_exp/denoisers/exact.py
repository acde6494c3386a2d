"""Exact posteriors p(x0 | y) for Gaussian-mixture priors under a linear measurement with Gaussian noise.

A prior that can state itself as a mixture (`prior.mixture(shape) -> (π (K,), μ (K, d), Σ (K, d, d))`, the
GMM and the stationary Gaussian) measured by y = A x0 + σ n, n ~ N(0, I), has the posterior

    p(x0 | y) = Σ_k w_k N(m_k, S_k),    w_k ∝ π_k N(y; A μ_k, A Σ_k Aᵀ + σ² I)
    G_k = Σ_k Aᵀ (A Σ_k Aᵀ + σ² I)⁻¹,   m_k = μ_k + G_k (y − A μ_k),   S_k = Σ_k − G_k A Σ_k

computed here in float64 on flattened images (d = C·H·W, small: a few hundred at most). A is the physics
object's own operator, made dense by applying it to the d basis images. Everything is on the [-1, 1] scale
where the prior and the physics live.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dps_exp.errors import ConfigError
from dps_exp.physics.base import Physics


class ExactPrior(ABC):
    """A prior that can state itself as a Gaussian mixture over images of a given shape (the GMM, the stationary
    Gaussian): its posterior under a linear operator with Gaussian noise is then exact (`exact_posterior`).
    A base class beside `Denoiser`, so that a config's class can be checked before it is built."""

    channels: int
    """The colour channels of its images."""

    @abstractmethod
    def mixture(self, shape: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """(weights (K,), means (K, d), covariances (K, d, d)), float64, for images of `shape` (C, H, W),
        d = C·H·W; ConfigError for a shape it is not defined on."""


MAX_DIMENSION = 4096
"""The largest image (C·H·W) whose exact posterior is computed: dense float64 d × d matrices, 128 MiB each here."""


@dataclass
class Mixture:
    """A batch of B Gaussian mixtures over images of `shape` (C, H, W) flattened to d = C·H·W, float64."""

    weights: Tensor
    """(B, K), each row sums to 1."""
    means: Tensor
    """(B, K, d)."""
    covariances: Tensor
    """(B, K, d, d), symmetric positive semi-definite."""
    shape: tuple[int, int, int]
    _factors: Tensor | None = field(default=None, repr=False)

    @property
    def mean(self) -> Tensor:
        """The mixture mean Σ_k w_k m_k (the MMSE estimate when this is a posterior), (B, C, H, W)."""
        return torch.einsum("bk,bkd->bd", self.weights, self.means).view(-1, *self.shape)

    @property
    def covariance(self) -> Tensor:
        """The mixture covariance Σ_k w_k (S_k + m_k m_kᵀ) − m mᵀ, (B, d, d)."""
        m = self.mean.flatten(1)
        second = self.covariances + self.means.unsqueeze(-1) * self.means.unsqueeze(-2)
        return torch.einsum("bk,bkde->bde", self.weights, second) - m.unsqueeze(-1) * m.unsqueeze(-2)

    def factors(self) -> Tensor:
        """F_k with F_k F_kᵀ = S_k (B, K, d, d), by eigendecomposition: it tolerates singular S_k (a pixel
        measured without noise has zero posterior variance), where Cholesky would fail."""
        if self._factors is None:
            lam, V = torch.linalg.eigh(0.5 * (self.covariances + self.covariances.mT))
            self._factors = V * lam.clamp_min(0.0).sqrt().unsqueeze(-2)
        return self._factors

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact draws per mixture, (B, n, C, H, W) float64: a component by weight, then m_k + F_k z."""
        B, K, d = self.means.shape
        F = self.factors()
        out = torch.empty(B, n, d, dtype=torch.float64)
        for b in range(B):
            ks = torch.multinomial(self.weights[b], n, replacement=True, generator=generator)
            z = torch.randn(n, d, generator=generator, dtype=torch.float64)
            for k in ks.unique().tolist():
                rows = ks == k
                out[b, rows] = self.means[b, k] + z[rows] @ F[b, k].mT
        return out.view(B, n, *self.shape)

    @staticmethod
    def cat(parts: Sequence[Mixture]) -> Mixture:
        """One batch of the mixtures of several (of one image shape)."""
        fields = (torch.cat([getattr(p, f) for p in parts]) for f in ("weights", "means", "covariances"))
        return Mixture(*fields, parts[0].shape)

    def __getitem__(self, b: int) -> Mixture:
        """The b-th mixture alone (a batch of one), with its factors if they are computed already (an
        eigendecomposition of K d × d matrices: scoring several sets against one posterior needs it once)."""
        s = slice(b, b + 1)
        factors = None if self._factors is None else self._factors[s]
        return Mixture(self.weights[s], self.means[s], self.covariances[s], self.shape, factors)


ExactPosterior = Mixture
"""What `exact_posterior` returns: p(x0 | y) for each of B measurements."""


def prior_mixture(prior, shape: Sequence[int]) -> Mixture:
    """The prior itself as a batch of one mixture over images of `shape` (C, H, W)."""
    if not isinstance(prior, ExactPrior):
        raise ConfigError(f"{type(prior).__name__} has no exact posterior (use denoiser=gmm or gaussian)")
    pi, mu, cov = prior.mixture(tuple(shape))
    return Mixture(pi[None], mu[None], cov[None], tuple(shape))


def dense_operator(physics: Physics, shape: Sequence[int], batch: int, device: torch.device | str = "cpu") -> Tensor:
    """The matrix of each sample's operator, (B, m, d) float64 on the CPU: column j is A(e_j) flattened.

    Applies `physics.A` (already drawn for a batch of `batch`, on `device`) to the d basis images, one call
    per basis image; A must be linear (A(0) = 0 is checked). Only for small images.
    """
    d = math.prod(shape)
    if bool(physics.A(torch.zeros(batch, *shape, device=device)).abs().amax() > 0):
        raise ConfigError(f"{type(physics).__name__} is not linear (A(0) ≠ 0): its posterior is not Gaussian")
    cols = []
    for j in range(d):
        e = torch.zeros(batch, d, device=device)
        e[:, j] = 1.0
        cols.append(physics.A(e.view(batch, *shape)).flatten(1).double().cpu())
    return torch.stack(cols, dim=-1)


def noise_std(physics: Physics, batch: int) -> Tensor:
    """σ of each sample's Gaussian measurement noise, (B,) float64 (0 for `kind=none`)."""
    noise = physics.noise
    if noise.kind == "none":
        return torch.zeros(batch, dtype=torch.float64)
    if noise.kind != "gaussian":
        raise ConfigError(f"the exact posterior needs Gaussian noise, not {noise.kind!r}")
    return torch.as_tensor(noise.sigma, dtype=torch.float64).cpu().expand(batch).clone()


def condition(prior: Mixture, A: Tensor, y: Tensor, sigma: Tensor) -> Mixture:
    """p(x0 | y) for y = A x0 + σ n: prior a batch-of-one mixture, A (B, m, d), y (B, m), σ (B,)."""
    pi, mu, cov = prior.weights[0], prior.means[0], prior.covariances[0]  # (K,), (K, d), (K, d, d)
    A, y, sigma = A.double(), y.double(), sigma.double()
    m = A.shape[1]
    AS = torch.einsum("bmd,kde->bkme", A, cov)  # A Σ_k, (B, K, m, d)
    S = AS @ A.mT.unsqueeze(1)  # A Σ_k Aᵀ, (B, K, m, m)
    # σ² on the diagonal, plus a tiny jitter so a noiseless measurement of a singular Σ stays factorable
    jitter = 1e-12 * S.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True).clamp_min(1e-12)
    S = S + torch.diag_embed((sigma.view(-1, 1, 1) ** 2 + jitter).expand(*S.shape[:-1]))
    L = torch.linalg.cholesky(S)
    r = y.unsqueeze(1) - torch.einsum("bmd,kd->bkm", A, mu)  # y − A μ_k, (B, K, m)
    Sinv_r = torch.cholesky_solve(r.unsqueeze(-1), L).squeeze(-1)
    Sinv_AS = torch.cholesky_solve(AS, L)  # S⁻¹ A Σ_k, so G_k = (S⁻¹ A Σ_k)ᵀ
    means = mu + torch.einsum("bkmd,bkm->bkd", Sinv_AS, r)
    covs = cov - AS.mT @ Sinv_AS
    covs = 0.5 * (covs + covs.mT)
    logdet = 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    log_ev = -0.5 * ((r * Sinv_r).sum(-1) + logdet + m * math.log(2 * math.pi))
    weights = torch.softmax(pi.log() + log_ev, dim=-1)
    return Mixture(weights, means, covs, prior.shape)


def exact_posterior(
    prior, physics: Physics, y: Tensor, shape: Sequence[int] | None = None, rows: Sequence[int] | None = None
) -> ExactPosterior:
    """p(x0 | y) for each of the B measurements y (as `physics.measure` returns them, any device) under the
    drawn linear `physics` with Gaussian noise, or for the batch `rows` only. `shape` (C, H, W) of the images:
    by default the prior's own (the GMM has one; the stationary Gaussian, defined at any size, needs it).
    Float64, on the CPU."""
    shape = tuple(shape or prior.shape or ())
    if len(shape) != 3:
        raise ConfigError(f"{type(prior).__name__} is defined at any size: pass the image shape (C, H, W)")
    if (d := math.prod(shape)) > MAX_DIMENSION:
        raise ConfigError(
            f"{'×'.join(map(str, shape))} images have {d} dimensions; the dense d × d algebra is done up to "
            f"{MAX_DIMENSION} (e.g. 32×32 RGB): {d * d * 8 / 2**30:.1f} GiB a matrix and hours a Cholesky here"
        )
    B = y.shape[0]
    A, y, sigma = dense_operator(physics, shape, B, y.device), y.flatten(1).double().cpu(), noise_std(physics, B)
    mixture = prior_mixture(prior, shape)
    # Each measurement is conditioned on its own, so its posterior does not depend on the rest of the batch.
    # Measurement entries its operator does not use (masked pixels) measure only noise: the same factor for
    # every component, so dropping them changes nothing but the cost (inpainting keeps m ≈ kept pixels).
    parts = []
    for b in range(B) if rows is None else rows:
        used = A[b].abs().amax(dim=1) > 0
        parts.append(condition(mixture, A[b, used][None], y[b, used][None], sigma[b : b + 1]))
    return Mixture.cat(parts)
