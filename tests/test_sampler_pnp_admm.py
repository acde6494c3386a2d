"""PnP-ADMM against deepinv 0.4.0's `ADMM` with its `PnP` prior, and the prior-as-denoiser against the exact one.

On the stationary Gaussian prior (`denoiser=gaussian`) the MMSE denoiser of v = x0 + σ n is known in closed form,
D_σ(v) = μ + Σ (Σ + σ² I)⁻¹ (v − μ), from the prior's mean and covariance (`mixture`) alone. That makes two outside
checks: our D_σ (Tweedie's x̂0 at the timestep t whose σ_t is nearest σ_d) equals this formula at σ_t; and deepinv's
ADMM driving this formula as its PnP denoiser (deepinv's `stepsize` γ = 1/ρ, `g_param` = σ_t, `lambda_reg` = 1
(unused by PnP's prox), `beta` = 1, `init` = (our z₀, 0)) walks the same iterates as ours, CG included (deepinv's
own CG on our operator's A and A_T for a blur, its closed form for inpainting).
"""

from __future__ import annotations

import json
import math

import deepinv as dinv
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from dps_exp.denoisers import StationaryGaussian
from dps_exp.errors import ConfigError
from dps_exp.physics import GaussianBlur, Noise, RandomInpainting
from dps_exp.run.experiment import Run
from dps_exp.samplers.pnp_admm import GaussianDenoiser, PnPADMM, noise_levels, timestep_for
from tests.helpers import cli, compose

SHAPE = (3, 8, 8)
RHO, SIGMA = 0.2, 0.2


@pytest.fixture
def prior(schedule):
    return StationaryGaussian(schedule)


class ExactDenoiser(nn.Module):
    """deepinv-style denoiser (v, σ) ↦ μ + Σ (Σ + σ² I)⁻¹ (v − μ): the Gaussian prior's MMSE denoiser, dense."""

    def __init__(self, prior):
        super().__init__()
        _, mu, cov = prior.mixture(SHAPE)
        self.mu, self.cov = mu[0], cov[0]
        self.gains: dict[float, torch.Tensor] = {}

    def forward(self, v, sigma):
        sigma = float(sigma)
        if sigma not in self.gains:
            eye = torch.eye(self.mu.numel(), dtype=torch.float64)
            self.gains[sigma] = self.cov @ torch.linalg.inv(self.cov + sigma**2 * eye)
        return (self.mu + (v.flatten(1).double() - self.mu) @ self.gains[sigma].T).view_as(v).to(v.dtype)


def measured(physics, batch=2):
    x = torch.rand(batch, *SHAPE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    physics.draw(x.shape, [torch.Generator().manual_seed(i) for i in range(batch)], torch.device("cpu"))
    return physics, physics.measure(x, [torch.Generator().manual_seed(10 + i) for i in range(batch)])


def sigma_t(schedule, sigma=SIGMA) -> float:
    """The noise level our denoiser actually runs at: σ_t of the timestep nearest σ_d."""
    return noise_levels(schedule.alphas_cumprod)[timestep_for(sigma, schedule.alphas_cumprod, 1)].item()


def test_the_timestep_is_the_one_whose_noise_level_is_nearest(schedule):
    levels = noise_levels(schedule.alphas_cumprod)
    t = timestep_for(torch.tensor([0.05, 0.2, 1.0, 10.0]), schedule.alphas_cumprod, 4)
    for s, ti in zip([0.05, 0.2, 1.0, 10.0], t.tolist(), strict=True):
        assert ti == (levels.log() - math.log(s)).abs().argmin().item()
        assert abs(levels[ti].item() / s - 1) < 0.02  # the linear schedule's grid is that fine here


def test_the_prior_as_a_denoiser_is_the_exact_mmse_denoiser(prior, schedule):
    v = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = GaussianDenoiser(prior, SIGMA, v)(v)
    exact = ExactDenoiser(prior)(v, sigma_t(schedule))
    assert (ours - exact).abs().max().item() <= 1e-5  # float32 FFTs against a float64 dense solve
    # and the noise level matters: at σ_d = 0.4 it is another denoiser
    assert (GaussianDenoiser(prior, 0.4, v)(v) - exact).abs().max().item() > 1e-2


@pytest.mark.parametrize(
    "physics, tol",
    [
        (RandomInpainting(mask=0.3, noise=Noise(sigma=0.05)), 1e-5),
        (GaussianBlur(std=1.0, kernel_size=5, method="fft"), 1e-4),
    ],
)
def test_each_iteration_matches_deepinv_pnp_admm(physics, tol, prior, schedule):
    """Measured: ≤ 2.4e-7 for inpainting (closed-form data step on both sides), ≤ 4e-5 for the blur (float32 CG on
    both sides). Mapping ρ to deepinv's `stepsize` as ρ instead of 1/ρ misses by 0.3, σ_d = 0.21 by 0.015."""
    physics, y = measured(physics)
    outputs = []

    class RecordedPnP(dinv.optim.PnP):
        def prox(self, x, *args, **kwargs):
            outputs.append(super().prox(x, *args, **kwargs).clone())
            return outputs[-1]

    if isinstance(physics, RandomInpainting):
        dphys = dinv.physics.Inpainting(img_size=SHAPE, mask=physics.m.expand_as(y).clone())
    else:
        dphys = dinv.physics.LinearPhysics(A=physics.A, A_adjoint=physics.A_T, max_iter=20, tol=1e-7)
    model = dinv.optim.ADMM(
        prior=RecordedPnP(ExactDenoiser(prior)), data_fidelity=dinv.optim.L2(), stepsize=1 / RHO, lambda_reg=1.0,
        beta=1.0, g_param=sigma_t(schedule), max_iter=3,
    )  # fmt: skip
    z0 = physics.init(y)
    model(y, dphys, init=(z0, torch.zeros_like(z0)))
    zs = []
    result = PnPADMM(iterations=3, rho=RHO, sigma=SIGMA, cg_steps=20).sample(
        y, physics, prior, schedule, None, callback=lambda k, x, z: zs.append(z)
    )
    assert result.nfe == 3 and (result.diverged_at == -1).all()
    assert max((a - b).abs().max().item() for a, b in zip(zs, outputs, strict=True)) <= tol


def test_a_sample_does_not_depend_on_its_batch(tmp_path):
    """Per-sample ρ, σ_d and mask through the Run, on the Gaussian prior: each sample batched as alone (≤ 1e-5)."""
    points = {"sampler.rho": [0.1, 0.2, 1.0], "sampler.sigma": [0.1, 0.2, 0.5], "physics.mask": [0.2, 0.4, 0.3]}
    lists = [f"{k}=[{','.join(map(str, v))}]" for k, v in points.items()]
    overrides = ["sampler=pnp_admm", "sampler.iterations=4", "denoiser=gaussian", "data.size=16", "logger=none"]
    run = Run(OmegaConf.to_container(compose([*overrides, "progress=false", *lists]), resolve=True), tmp_path)
    item = run.data.items()[0]
    together = run.run_batch([(item, p, 0) for p in run.points])
    for b, p in enumerate(run.points):
        assert (together[b] - run.run_batch([(item, p, 0)])[0]).abs().max().item() <= 1e-5
    assert (together[0] - together[1]).abs().max().item() > 1e-2


def test_refuses_a_noise_level_outside_the_schedule(prior):
    physics, _ = measured(RandomInpainting())
    PnPADMM(sigma=100.0).check(prior, physics)
    with pytest.raises(ConfigError, match=r"sampler.sigma=1000.0 is outside the noise levels"):
        PnPADMM(sigma=1000.0).check(prior, physics)


ARGS = ["denoiser=gaussian", "data.size=32", "data.limit=1", "logger=none", "progress=false"]


def test_runs_end_to_end_through_the_cli_one_network_evaluation_an_iteration(tmp_path):
    proc = cli(*ARGS, "sampler=pnp_admm", "sampler.iterations=3", "physics=super_resolution", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results,) = tmp_path.glob("outputs/*/*/results.jsonl")
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["status"] == "ok" and row["nfe"] == 3 and row["metrics"]["psnr"] > 10


def test_refuses_phase_retrieval_in_one_line(tmp_path):
    proc = cli(*ARGS, "sampler=pnp_admm", "physics=phase_retrieval", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: sampler=pnp_admm needs a linear operator with an adjoint (its x-update solves (AᵀA + ρI) x = Aᵀy + …); "
        "PhaseRetrieval is not linear: use sampler=dps"
    ]
