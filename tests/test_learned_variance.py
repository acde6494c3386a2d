"""The official code's ancestral step with learned variance, against an independent float64 computation of
guided-diffusion's posterior (GaussianDiffusion / SpacedDiffusion arrays, built here from scratch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dps_exp.denoisers.base import Prediction
from dps_exp.samplers.dps import DPS
from dps_exp.schedule import LinearSchedule


def guided_diffusion_arrays(kept: list[int]):
    """SpacedDiffusion: β of the kept timesteps from ᾱ ratios, then GaussianDiffusion's posterior arrays."""
    betas = np.linspace(1e-4, 2e-2, 1000, dtype=np.float64)
    ab_full = np.cumprod(1.0 - betas)
    new_betas, last = [], 1.0
    for t, ab in enumerate(ab_full):
        if t in kept:
            new_betas.append(1 - ab / last)
            last = ab
    b = np.array(new_betas)
    ab = np.cumprod(1 - b)
    ab_prev = np.append(1.0, ab[:-1])
    post_var = b * (1 - ab_prev) / (1 - ab)
    return {
        "beta": b,
        "log_var_clipped": np.log(np.append(post_var[1], post_var[1:])),
        "coef1": b * np.sqrt(ab_prev) / (1 - ab),
        "coef2": (1 - ab_prev) * np.sqrt(1 - b) / (1 - ab),
    }


def p_sample(arr, k, x0, x_t, v, noise):
    """guided-diffusion's p_sample at respaced index k, given the clipped x̂0 and the variance output v."""
    frac = (v + 1) / 2
    log_var = frac * np.log(arr["beta"][k]) + (1 - frac) * arr["log_var_clipped"][k]
    mean = arr["coef1"][k] * x0 + arr["coef2"][k] * x_t
    return mean + (k != 0) * np.exp(0.5 * log_var) * noise


@pytest.mark.parametrize("steps", [1000, 100, 7])
def test_learned_variance_update_matches_guided_diffusion(steps):
    schedule = LinearSchedule()
    sampler = DPS(steps=steps, variance="learned")
    ts = sampler.timesteps(schedule)
    assert len(ts) == steps
    arr = guided_diffusion_arrays(set(ts.tolist()))
    update = sampler.update_rule(schedule, ts, batch=2)
    gen = torch.Generator().manual_seed(steps)
    worst = 0.0
    for i in [0, 1, steps // 2, steps - 2, steps - 1]:
        x_t, eps, noise = (torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64) for _ in range(3))
        v = torch.rand(2, 3, 4, 4, generator=gen, dtype=torch.float64) * 2 - 1
        x0 = (torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)).clamp(-1, 1)
        ours = update(i, x_t.float(), Prediction(eps.float(), x0.float(), v.float()), noise.float())
        k = steps - 1 - i  # guided-diffusion indexes the respaced steps upwards
        expected = p_sample(arr, k, x0.numpy(), x_t.numpy(), v.numpy(), noise.numpy())
        worst = max(worst, np.abs(ours.double().numpy() - expected).max())
    assert worst <= 1e-6, worst


def test_respacing_rounds_as_guided_diffusion():
    s = LinearSchedule()
    assert s.respaced(4).tolist() == [999, 666, 333, 0]
    assert s.respaced(3).tolist() == [999, 500, 0]  # round(499.5) = 500, Python's banker's rounding
    assert s.respaced(1000).tolist() == list(range(999, -1, -1))
    assert s.respaced(1).tolist() == [0]


def test_learned_variance_needs_a_prior_that_has_it(schedule):
    from dps_exp.denoisers import StationaryGaussian
    from dps_exp.physics import RandomInpainting

    sampler = DPS(steps=3, variance="learned")
    physics = RandomInpainting(mask=0.5).draw((1, 3, 8, 8), [torch.Generator()], "cpu")
    with pytest.raises(ValueError, match="needs a prior with learned variance"):
        sampler.sample(
            torch.zeros(1, 3, 8, 8), physics, StationaryGaussian(schedule), schedule, lambda: torch.randn(1, 3, 8, 8)
        )
