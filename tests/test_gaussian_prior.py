"""The stationary Gaussian prior's FFT denoiser is the exact posterior mean (dense linear algebra)."""

from __future__ import annotations

import pytest
import torch

from dps_exp.denoisers import StationaryGaussian


def dense_covariance(prior: StationaryGaussian, h: int, w: int) -> torch.Tensor:
    """Σ = Σ_c ⊗ K, the dense covariance the exact-posterior code uses."""
    return prior.mixture((3, h, w))[2][0]


@pytest.mark.parametrize("t", [0, 100, 500, 999])
@pytest.mark.parametrize("size", [(6, 6), (5, 8)])
def test_fft_denoiser_is_the_dense_posterior_mean(schedule, t, size):
    h, w = size
    prior = StationaryGaussian(schedule, alpha=2.5, std=0.4, color_correlation=0.6, mean=(0.1, -0.2, 0.0))
    Sigma = dense_covariance(prior, h, w)
    mu = prior.mean.double().expand(1, 3, h, w).flatten()
    ab = schedule.alphas_cumprod[t]
    x_t = torch.randn(1, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(t))
    # E[x0 | x_t] = μ + √ᾱ Σ (ᾱ Σ + (1 − ᾱ) I)⁻¹ (x_t − √ᾱ μ)
    A = ab * Sigma + (1 - ab) * torch.eye(Sigma.shape[0], dtype=torch.float64)
    expected = mu + ab.sqrt() * Sigma @ torch.linalg.solve(A, x_t.flatten() - ab.sqrt() * mu)
    got = prior(x_t.float(), torch.tensor([t])).x0.double().flatten()
    assert torch.allclose(got, expected, atol=2e-5, rtol=1e-4), (got - expected).abs().max()


def test_marginal_std_and_colour_correlation(schedule):
    prior = StationaryGaussian(schedule, std=0.3, color_correlation=0.5)
    Sigma = dense_covariance(prior, 4, 4)
    assert torch.allclose(Sigma.diagonal(), torch.full((48,), 0.09, dtype=torch.float64), atol=1e-6)
    assert Sigma[0, 16].item() == pytest.approx(0.5 * 0.09, abs=1e-6)  # same pixel, red vs green


def test_eps_and_x0_are_consistent(schedule):
    prior = StationaryGaussian(schedule)
    x_t, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 700])
    pred = prior(x_t, t)
    assert torch.allclose(prior.x0_from_eps(x_t, t, pred.eps), pred.x0, atol=1e-4)
