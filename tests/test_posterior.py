"""Exact posteriors against dense Bayesian linear algebra, and the posterior metrics on known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from dps_exp.denoisers import StationaryGaussian
from dps_exp.denoisers.exact import dense_operator, exact_posterior, prior_mixture
from dps_exp.denoisers.gmm import GaussianMixture
from dps_exp.errors import ConfigError
from dps_exp.metrics.posterior import coverage, posterior_metrics, sliced_wasserstein
from dps_exp.physics import LinearPhysics, Noise, RandomInpainting


class Matrix(LinearPhysics):
    """y = M x + n for a dense (m, d) matrix: a general linear operator for the tests."""

    def __init__(self, M, sigma):
        super().__init__(Noise(sigma=sigma))
        self.M = M

    def A(self, x):
        return (x.flatten(1) @ self.M.T.to(x.dtype)).view(x.shape[0], -1)


def gens(n, offset=0):
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


def precision_form(mu, Sigma, A, y, sigma):
    """Textbook Bayesian linear regression: P = Σ⁻¹ + AᵀA/σ², cov = P⁻¹, mean = cov (Σ⁻¹μ + Aᵀy/σ²)."""
    Si = torch.linalg.inv(Sigma)
    cov = torch.linalg.inv(Si + A.T @ A / sigma**2)
    return cov @ (Si @ mu + A.T @ y / sigma**2), cov


@pytest.mark.parametrize("which", ["gmm", "gaussian", "gaussian-matrix"])
def test_single_component_posterior_is_dense_bayesian_linear_algebra(schedule, which):
    shape = (3, 4, 4) if which.startswith("gaussian") else (1, 5, 5)
    if which.startswith("gaussian"):
        prior = StationaryGaussian(schedule, alpha=2.0, std=0.4, color_correlation=0.5)
    else:
        prior = GaussianMixture(schedule, channels=1, image_size=5, components=1, seed=3)
    d = math.prod(shape)
    if which.endswith("matrix"):
        physics = Matrix(torch.randn(20, d, generator=torch.Generator().manual_seed(0)) / d**0.5, sigma=0.2)
    else:
        physics = RandomInpainting(mask=0.4, noise=Noise(sigma=0.1)).draw((2, *shape), gens(2), "cpu")
    x = prior_mixture(prior, shape).sample(2, torch.Generator().manual_seed(5))[0].float()
    y = physics.measure(x, gens(2, 10))
    post = exact_posterior(prior, physics, y, shape)
    _, mu, Sigma = prior.mixture(shape)
    A = dense_operator(physics, shape, 2)
    for b in range(2):
        mean, cov = precision_form(mu[0], Sigma[0], A[b], y[b].flatten().double(), physics.noise.sigma)
        assert torch.allclose(post.mean[b].flatten(), mean, atol=1e-8)
        assert torch.allclose(post.covariance[b], cov, atol=1e-8)
    assert torch.allclose(post.weights, torch.ones(2, 1, dtype=torch.float64))


def test_mixture_weights_are_the_evidence_of_each_component(schedule):
    prior = GaussianMixture(schedule, channels=1, image_size=3, components=4, seed=7, mean_scale=0.5)
    physics = RandomInpainting(mask=0.5, noise=Noise(sigma=0.05)).draw((3, 1, 3, 3), gens(3), "cpu")
    x = prior_mixture(prior, prior.shape).sample(3, torch.Generator().manual_seed(1))[0].float()
    y = physics.measure(x, gens(3, 20))
    post = exact_posterior(prior, physics, y)
    pi, mu, Sigma = prior.mixture(prior.shape)
    A = dense_operator(physics, prior.shape, 3)
    for b in range(3):
        S = A[b] @ Sigma @ A[b].T + 0.05**2 * torch.eye(9, dtype=torch.float64)
        log_ev = MultivariateNormal(mu @ A[b].T, S).log_prob(y[b].flatten().double())
        assert torch.allclose(post.weights[b], torch.softmax(pi.log() + log_ev, 0), atol=1e-9)
    assert post.weights.amax(1).min() > 0.3  # not a degenerate test: the data favour some components


def test_exact_samples_have_the_posterior_mean_and_covariance(schedule):
    prior = GaussianMixture(schedule, channels=1, image_size=2, components=3, seed=4)
    physics = RandomInpainting(mask=0.5, noise=Noise(sigma=0.2)).draw((1, 1, 2, 2), gens(1, 3), "cpu")
    x = prior_mixture(prior, prior.shape).sample(1, torch.Generator().manual_seed(2))[0].float()
    post = exact_posterior(prior, physics, physics.measure(x, gens(1)))
    s = post.sample(40_000, torch.Generator().manual_seed(0))[0].flatten(1)
    se = (post.covariance[0].diagonal() / 40_000).sqrt()
    assert ((s.mean(0) - post.mean[0].flatten()).abs() < 5 * se).all()
    assert torch.allclose(s.T.cov(), post.covariance[0], atol=0.03 * post.covariance[0].diagonal().max())


def test_posteriors_of_some_rows_are_those_rows_of_the_whole_batch(schedule):
    """`rows` conditions only the rows asked for (a run asks for the units a batch starts), per-sample σ too."""
    prior = GaussianMixture(schedule, channels=1, image_size=3, components=2, seed=1)
    sigma = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    physics = RandomInpainting(mask=0.6, noise=Noise(sigma=sigma)).draw((4, 1, 3, 3), gens(4), "cpu")
    x = prior_mixture(prior, prior.shape).sample(4, torch.Generator().manual_seed(2))[0].float()
    y = physics.measure(x, gens(4, 10))
    whole, some = exact_posterior(prior, physics, y), exact_posterior(prior, physics, y, rows=[3, 1])
    for j, b in enumerate([3, 1]):
        for field in ("weights", "means", "covariances"):
            assert torch.allclose(getattr(some[j], field), getattr(whole[b], field), atol=1e-10)


def test_a_noiseless_pixel_has_no_posterior_variance_and_nonlinear_operators_are_refused(schedule):
    prior = GaussianMixture(schedule, channels=1, image_size=3, components=2)
    physics = RandomInpainting(mask=0.5, noise=Noise(kind="none")).draw((1, 1, 3, 3), gens(1), "cpu")
    x = prior_mixture(prior, prior.shape).sample(1, torch.Generator().manual_seed(2))[0].float()
    post = exact_posterior(prior, physics, physics.measure(x, gens(1)))
    kept = physics.m.flatten().bool()
    assert torch.allclose(post.mean.flatten()[kept], x.double().flatten()[kept], atol=1e-5)
    assert post.covariance[0].diagonal()[kept].abs().max() < 1e-6
    assert torch.isfinite(post.sample(4, torch.Generator())).all()

    class Shifted(RandomInpainting):
        def A(self, x):
            return super().A(x) + 1.0

    shifted = Shifted(mask=0.5).draw((1, 1, 3, 3), gens(1), "cpu")
    with pytest.raises(ConfigError, match="not linear"):
        exact_posterior(prior, shifted, shifted.A(x))


def test_sliced_wasserstein_zero_on_itself_and_shift_over_root_d():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 16, generator=gen, dtype=torch.float64)
    assert sliced_wasserstein(x, x, 64, gen) == 0
    s = torch.linspace(-1, 1, 16, dtype=torch.float64)
    got = sliced_wasserstein(x, x + s, 4000, gen)
    assert got.item() == pytest.approx(s.norm().item() / 4, rel=0.05)  # |s| / √d
    # unequal sizes: a set against itself repeated is the same distribution
    assert sliced_wasserstein(x, torch.cat([x, x]), 64, gen) < 1e-12


def test_exact_samples_score_at_their_floors_and_shifted_ones_do_not(schedule):
    prior = GaussianMixture(schedule, channels=1, image_size=3, components=3, seed=5)
    B, N = 8, 9
    physics = RandomInpainting(mask=0.3, noise=Noise(sigma=0.05)).draw((B, 1, 3, 3), gens(B), "cpu")
    x = prior_mixture(prior, prior.shape).sample(B, torch.Generator().manual_seed(3))[0].float()
    post = exact_posterior(prior, physics, physics.measure(x, gens(B, 50)))
    samples = post.sample(N, torch.Generator().manual_seed(4))
    m = posterior_metrics(samples, post, x, torch.Generator().manual_seed(5), reference=500)
    assert set(m) == {"mean_rmse", "mean_rmse_floor", "sliced_w2", "sliced_w2_floor", "coverage", "coverage_expected"}
    assert all(v.shape == (B,) for v in m.values())
    ratio = lambda a, b: (m[a].mean() / m[b].mean()).item()  # noqa: E731
    assert 0.6 < ratio("mean_rmse", "mean_rmse_floor") < 1.4
    assert 0.6 < ratio("sliced_w2", "sliced_w2_floor") < 1.4
    assert abs(m["coverage"].mean() - 0.8) < 0.1 and m["coverage_expected"][0] == pytest.approx(0.8)
    shift = 0.5
    shifted = posterior_metrics(samples + shift, post, x, torch.Generator().manual_seed(5), reference=500)
    assert torch.allclose(shifted["mean_rmse"], (m["mean_rmse"] ** 2 + shift**2).sqrt(), rtol=0.3)
    assert (shifted["sliced_w2"] > 0.8 * shift).all() and shifted["coverage"].mean() < 0.5


def test_coverage_counts_values_inside_the_sample_range():
    samples = torch.tensor([[0.0, 0.0], [1.0, 2.0]]).view(2, 1, 1, 2)
    assert coverage(samples, torch.tensor([0.5, 3.0]).view(1, 1, 2)) == 0.5


def test_one_posterior_of_a_batch_keeps_the_factors_computed_for_the_batch(schedule, monkeypatch):
    # scoring many sets against one batch of posteriors (the leaderboard) must decompose each covariance once
    prior = GaussianMixture(schedule, channels=1, image_size=3, components=2, seed=1)
    physics = RandomInpainting(mask=0.5, noise=Noise(sigma=0.05)).draw((3, 1, 3, 3), gens(3), "cpu")
    post = exact_posterior(prior, physics, physics.measure(torch.zeros(3, 1, 3, 3), gens(3, 10)))
    whole = post.factors()
    calls = []
    eigh = torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda *a, **k: calls.append(1) or eigh(*a, **k))
    one = post[1]
    assert torch.equal(one.factors(), whole[1:2]) and not calls
    assert one.sample(2, torch.Generator().manual_seed(0)).shape == (1, 2, 1, 3, 3) and not calls
