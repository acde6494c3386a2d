"""The Gaussian-mixture prior: its denoiser is E[x0 | x_t] (Monte Carlo, and the exact-posterior code with
A = √ᾱ I), its explicit parameters are checked, and it draws the ground truth of `data=prior_samples`."""

from __future__ import annotations

import pytest
import torch

from dps_exp.config import resolve
from dps_exp.denoisers.exact import condition, prior_mixture
from dps_exp.denoisers.gmm import GaussianMixture
from dps_exp.errors import ConfigError, DataError
from dps_exp.run.experiment import Run
from tests.helpers import compose


@pytest.fixture
def gmm(schedule):
    return GaussianMixture(schedule, channels=1, image_size=2, components=3, seed=1, decay=1.5)


@pytest.mark.parametrize("t", [100, 400, 800])
def test_denoiser_matches_a_monte_carlo_posterior_mean_within_error_bars(gmm, t):
    """Self-normalised importance sampling with the prior as proposal: x0_i ~ p, w_i ∝ N(x_t; √ᾱ x0_i, 1−ᾱ)."""
    gen = torch.Generator().manual_seed(t)
    ab = gmm.alphas_cumprod[t].double()
    x0 = prior_mixture(gmm, gmm.shape).sample(200_000, gen)[0].flatten(1)  # (N, 4)
    truth = prior_mixture(gmm, gmm.shape).sample(2, gen)[0]
    x_t = ab.sqrt() * truth + (1 - ab).sqrt() * torch.randn(truth.shape, generator=gen, dtype=torch.float64)
    got = gmm(x_t.float(), torch.full((2,), t)).x0.double().flatten(1)
    for b in range(2):
        logw = -0.5 * ((x_t[b].flatten() - ab.sqrt() * x0) ** 2).sum(1) / (1 - ab)
        w = torch.softmax(logw, 0)
        est = w @ x0
        se = ((w[:, None] ** 2) * (x0 - est) ** 2).sum(0).sqrt()  # delta-method standard error
        assert 1 / (w**2).sum() > 500  # enough effective samples for the error bar to mean something
        assert ((got[b] - est).abs() < 5 * se + 1e-6).all(), (got[b], est, se)


@pytest.mark.parametrize("t", [0, 250, 999])
def test_denoiser_is_the_exact_posterior_of_the_diffusion_measurement(schedule, t):
    """x_t = √ᾱ x0 + √(1−ᾱ) ε is a linear-Gaussian measurement: the eigenbasis denoiser and the generic
    conditioning (gain form, Cholesky) are two derivations of the same E[x0 | x_t]."""
    prior = GaussianMixture(schedule, channels=3, image_size=3, components=5, seed=2)
    ab = prior.alphas_cumprod[t].double()
    x_t = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    eye = torch.eye(27, dtype=torch.float64).expand(4, 27, 27)
    post = condition(prior_mixture(prior, prior.shape), ab.sqrt() * eye, x_t.flatten(1), (1 - ab).sqrt().expand(4))
    got = prior(x_t.float(), torch.full((4,), t)).x0.double()
    assert torch.allclose(got, post.mean, atol=2e-6), (got - post.mean).abs().max()


def test_eps_and_x0_are_consistent_and_gradients_flow(gmm):
    x_t = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(0)).requires_grad_()
    t = torch.tensor([5, 500, 990])
    pred = gmm(x_t, t)
    assert pred.x0.dtype == torch.float32
    # ε → x̂0 divides by √ᾱ_t (≈ 0.007 at t = 990): float32 rounding of ε grows by that much, no more
    tolerance = 2e-6 / gmm.sqrt_ab[t].view(-1, 1, 1, 1)
    assert ((gmm.x0_from_eps(x_t, t, pred.eps) - pred.x0).abs() <= tolerance).all()
    (g,) = torch.autograd.grad(pred.x0.sum(), x_t)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_explicit_parameters_and_their_checks(schedule):
    mu = [[0.1, -0.2], [0.3, 0.0]]
    cov = [[[0.04, 0.01], [0.01, 0.09]], [[0.01, 0.0], [0.0, 0.02]]]
    prior = GaussianMixture(
        schedule, image_size=1, channels=2, components=2, means=mu, covariances=cov, weights=[0.3, 0.7]
    )
    pi, m, c = prior.mixture((2, 1, 1))
    assert torch.allclose(pi, torch.tensor([0.3, 0.7], dtype=torch.float64))
    assert torch.allclose(m, torch.tensor(mu, dtype=torch.float64))
    assert torch.allclose(c, torch.tensor(cov, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ConfigError, match="shape"):
        GaussianMixture(schedule, image_size=1, channels=2, components=3, means=mu)
    with pytest.raises(ConfigError, match="positive semi-definite"):
        GaussianMixture(schedule, image_size=1, channels=2, components=1, covariances=[[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ConfigError, match="sum to 1"):
        GaussianMixture(schedule, image_size=1, channels=2, components=2, weights=[0.5, 0.6])


def test_default_draws_mostly_stay_inside_the_clipping_range(schedule):
    prior = GaussianMixture(schedule)
    x = prior_mixture(prior, prior.shape).sample(2000, torch.Generator().manual_seed(0))
    assert (x.abs() > 1).double().mean() < 0.01  # DPS clips x̂0 to [-1, 1]; the prior should rarely need it
    assert 0.15 < x.std(1).mean() < 0.4


def spec(*overrides):
    base = ["denoiser=gmm", "data=prior_samples", "logger=none", "progress=false", "sampler.steps=20"]
    return resolve(compose([*base, *overrides]))


def test_prior_samples_are_stable_per_index_and_run_through_the_run(tmp_path):
    from dps_exp.config import build

    few, many = build(spec("data.count=2")["data"]), build(spec("data.count=5")["data"])
    assert [it.index for it in many.items()] == [0, 1, 2, 3, 4]
    assert torch.equal(few.load(few.items()[1]), many.load(many.items()[1]))
    assert few.load(few.items()[0]).shape == (1, 8, 8)
    (summary,) = Run(spec("data.count=3", "metrics.names=[psnr]"), tmp_path).execute()
    assert summary["ok"] == 3 and summary["metrics"]["psnr"]["mean"] > 10


def test_prior_samples_refuse_a_prior_without_an_exact_posterior():
    from dps_exp.config import build

    with pytest.raises(DataError, match="exact posterior"):
        build(resolve(compose(["denoiser=ffhq", "data=prior_samples", "data.size=8"]))["data"])
