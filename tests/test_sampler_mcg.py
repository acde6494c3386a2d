"""sampler=mcg against the official DPS code's `mcg` conditioning (`ManifoldConstraintGradient`), written out here
step by step: `out = p_sample(x, t)`; `y_t = q_sample(y, t)`; `x' = out.sample − scale · ∇_x ‖y − A x̂0‖`
(`grad_and_value`: the plain norm under Gaussian noise, ‖y − A x̂0‖ · mean 1/|y| under Poisson, on a batch of one);
then `project(x', y_t)` as in tests/test_sampler_score_sde.py (which says what each operator's projection is and
how the steps are compared: here relative to the largest of the step and ζ g, which reaches 250 at t = 999 under
the Poisson term; measured ≤ 3e-8 of it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dps_exp.errors import ConfigError
from dps_exp.physics import GaussianBlur, PhaseRetrieval
from dps_exp.physics.resize import resize_matrix
from dps_exp.samplers.mcg import MCG
from tests.helpers import cli
from tests.test_learned_variance import guided_diffusion_arrays, p_sample
from tests.test_sampler_score_sde import (
    POINTS,
    SIZE,
    TOL,
    batched_equals_alone,
    disagreement,
    make_problem,
    noised_measurement,
    official_projection,
    official_x0,
    run_recorded,
    tiny_prior,
)


@pytest.fixture(scope="module")
def prior():
    return tiny_prior()


def official_terms(prior, kind, physics, x: torch.Tensor, t: int, ab: float, y: torch.Tensor, poisson: bool):
    """The network's ε̂ and v (float32) and g = ∇_x of each sample's ‖y − A x̂0(x)‖ (times mean 1/|y| under
    Poisson), the rest in float64; summing the samples' terms gives each its own gradient, as a batch of one."""
    x = x.double().requires_grad_(True)
    out = prior.net(x.float(), torch.full((x.shape[0],), t)).double()
    x0 = (np.sqrt(1 / ab) * x - np.sqrt(1 / ab - 1) * out[:, :3]).clamp(-1, 1)
    if kind == "inpaint":
        Ax = physics.m.double() * x0
    elif kind == "sr":
        R = resize_matrix(SIZE, 1 / 4)
        Ax = R @ x0 @ R.T
    else:
        Ax = x0
    norm = torch.linalg.vector_norm((y.double() - Ax).flatten(1), dim=1)
    if poisson:
        norm = norm * (1 / y.double().abs()).flatten(1).mean(1)
    (g,) = torch.autograd.grad(norm.sum(), x)
    out = out.detach().numpy()
    return out[:, :3], out[:, 3:], g.numpy()


@pytest.mark.parametrize(
    ("kind", "noise_kind", "distance"),
    [("inpaint", "gaussian", "auto"), ("sr", "gaussian", "auto"), ("denoise", "gaussian", "auto"),
     ("inpaint", "poisson", "official")],
)  # fmt: skip
def test_each_step_is_the_official_mcg_step(prior, schedule, kind, noise_kind, distance):
    physics, y = make_problem(kind, noise_kind)
    scale = torch.tensor([0.5, 1.0])  # per sample
    sampler = MCG(steps=3, step_size=scale, variance="learned", distance=distance)
    ts = sampler.timesteps(schedule).tolist()
    xs, draws, result = run_recorded(sampler, physics, y, prior, schedule)
    arr = guided_diffusion_arrays(set(ts))
    ab = np.cumprod(1 - arr["beta"])
    worst, moved = 0.0, 0.0
    for i, t in enumerate(ts):
        k = len(ts) - 1 - i
        x = xs[i].double().numpy()
        eps, v, g = official_terms(prior, kind, physics, xs[i], t, ab[k], y, noise_kind == "poisson")
        sample = p_sample(arr, k, official_x0(ab[k], x, eps), x, v, draws[1 + 2 * i].double().numpy())
        step = scale.double().numpy()[:, None, None, None] * g
        expected = official_projection(kind, physics, sample - step, noised_measurement(y, ab[k], draws[2 + 2 * i]))
        worst = max(worst, disagreement(xs[i + 1], expected, step))  # ζ g reaches 250 under the Poisson term
        moved = max(moved, np.abs(official_projection(kind, physics, g, np.zeros(y.shape))).max())  # (I − A⁺A) g
    assert worst <= TOL, worst
    assert result.nfe == 3 and (result.diverged_at == -1).all()
    if kind != "denoise":  # the gradient acted: its part outside the measured one is not zero
        assert moved > 1e-3


@pytest.mark.parametrize("physics", [PhaseRetrieval(), GaussianBlur()])
def test_operators_without_an_exact_projection_are_refused(prior, physics):
    with pytest.raises(ConfigError, match=f"^sampler=mcg .*{type(physics).__name__} .*use sampler=dps"):
        MCG().check(prior, physics)


def test_a_blur_is_refused_in_one_line(prior):
    with pytest.raises(ConfigError) as err:
        MCG().check(prior, GaussianBlur())
    assert str(err.value) == (
        "sampler=mcg needs the operator's exact pseudo-inverse A⁺ (inpainting, super-resolution, denoising); "
        "GaussianBlur has none (use sampler=dps)"
    )


def test_distance_follows_dps(prior):
    physics, _ = make_problem("inpaint")
    with pytest.raises(ConfigError, match="sampler.distance=official weighs Poisson counts"):
        MCG(distance="official").check(prior, physics)


def test_batched_equals_alone(tmp_path):
    batched_equals_alone(tmp_path, "mcg", {**POINTS, "sampler.step_size": [0.7, 5.0, 1.0, 2.0]})


def test_cli_runs_inpainting_end_to_end(tmp_path):
    """(The CLI's refusal, exit 2 with the one line, is tested for score_sde: the two share `require_projection`.)"""
    proc = cli("sampler=mcg", "sampler.variance=eta", "sampler.steps=20", "denoiser=gaussian", "data.size=32",
               "data.limit=1", "logger=none", "progress=false", "physics=inpaint_random", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results,) = tmp_path.glob("outputs/*/*/results.jsonl")
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["status"] == "ok" and row["nfe"] == 20 and row["params"]["sampler.step_size"] == 1.0
