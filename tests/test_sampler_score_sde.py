"""sampler=score_sde against the official DPS code's `projection` conditioning, written out here step by step.

The official loop (guided_diffusion/gaussian_diffusion.py `p_sample_loop`, condition_methods.py `Projection`) at
each respaced index k (timestep t): `out = p_sample(x, t)`; `y_t = q_sample(y, t)` = √ᾱ_t y + √(1 − ᾱ_t) ε_y;
`x = project(out.sample, y_t)`. Its `project` per operator, and what we compare against:

  inpainting   the mask combine x (1 − m) + y_t m (what the MCG authors' own FFHQ code does; the DPS code's
               generic `LinearOperator.project`, (I − AᵀA) y_t − A x, is not a projection)
  SR           x − T(D x) + T(y_t), the code's formula, with T the exact pseudo-inverse A⁺ (computed here with
               numpy from the resize matrices) where the code upsamples by nearest neighbours
  denoising    y_t (the code's `DenoiseOperator.project(data)` cannot take the measurement)

Our sampler runs its real loop on the tiny ADM network (learned variance); the noise it draws and the iterates it
reaches are recorded, and each recorded step is compared with the formula (float64, on the same float32 network
outputs) applied to the previous iterate: within TOL = 1e-6 of the step's largest term (the iterates reach ±5,
float32 resolves 6e-8 of a value; measured ≤ 2.3e-7 of it).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from dps_exp.errors import ConfigError
from dps_exp.physics import (
    Denoising,
    GaussianBlur,
    MotionBlur,
    Noise,
    PhaseRetrieval,
    RandomInpainting,
    SuperResolution,
)
from dps_exp.physics.resize import resize_matrix
from dps_exp.run.experiment import Run
from dps_exp.samplers.score_sde import Projection, ScoreSDE
from dps_exp.schedule import LinearSchedule
from tests.conftest import TinyADM, tiny_adm_state
from tests.helpers import cli, compose
from tests.test_learned_variance import guided_diffusion_arrays, p_sample

TOL = 1e-6
SIZE = 16  # the tiny ADM's images


def make_problem(kind: str, noise_kind: str = "gaussian"):
    """(physics, y) for a batch of 2 random 16×16 images."""
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    x = torch.rand(2, 3, SIZE, SIZE, generator=gens[0]) * 2 - 1
    noise = Noise(kind=noise_kind, sigma=0.05)
    physics = {"inpaint": RandomInpainting(mask=0.3, noise=noise), "sr": SuperResolution(factor=4, noise=noise),
               "denoise": Denoising(noise=noise)}[kind]  # fmt: skip
    physics.draw(x.shape, gens, torch.device("cpu"))
    return physics, physics.measure(x, [torch.Generator().manual_seed(10 + i) for i in range(2)])


def run_recorded(sampler, physics, y, prior, schedule):
    """Our loop as it runs: the iterates x_T, x_1, … and every draw of the noise source, in order."""
    gen = torch.Generator().manual_seed(5)
    draws: list[torch.Tensor] = []

    def noise():
        draws.append(torch.randn(y.shape[0], 3, SIZE, SIZE, generator=gen))
        return draws[-1].clone()

    xs: list[torch.Tensor] = []
    result = sampler.sample(y, physics, prior, schedule, noise, callback=lambda i, x, x0: xs.append(x.clone()))
    return [draws[0], *xs], draws, result


def official_projection(kind: str, physics, x: np.ndarray, y_t: np.ndarray) -> np.ndarray:
    """The official `project(x, y_t)` per operator, as written out in the module docstring (float64)."""
    if kind == "inpaint":
        m = physics.m.double().numpy()
        return x * (1 - m) + y_t * m
    if kind == "sr":
        R = resize_matrix(SIZE, 1 / 4).numpy()
        P = np.linalg.pinv(R)
        return x - P @ (R @ x @ R.T) @ P.T + P @ y_t @ P.T
    return y_t


def disagreement(ours: torch.Tensor, expected: np.ndarray, *terms: np.ndarray) -> float:
    """max |ours − expected|, relative to the largest value among 1, the step and its `terms` (float32 keeps
    about 7 digits of each term it sums)."""
    scale = max(1.0, *(np.abs(a).max() for a in (expected, *terms)))
    return float(np.abs(ours.double().numpy() - expected).max() / scale)


def network(prior, x: torch.Tensor, t: int) -> tuple[np.ndarray, np.ndarray]:
    """ε̂ and the learned-range variance output v of the tiny network (float32), as float64 arrays."""
    with torch.no_grad():
        out = prior.net(x, torch.full((x.shape[0],), t))
    return out[:, :3].double().numpy(), out[:, 3:].double().numpy()


def official_x0(ab: float, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """guided-diffusion's `_predict_xstart_from_eps`, clipped (clip_denoised=True)."""
    return np.clip(np.sqrt(1 / ab) * x - np.sqrt(1 / ab - 1) * eps, -1, 1)


def noised_measurement(y: torch.Tensor, ab: float, eps_image: torch.Tensor) -> np.ndarray:
    """`q_sample(y, t)` with ε_y the first numel(y) entries of each sample's image-shaped draw."""
    eps = eps_image.flatten(1)[:, : y[0].numel()].reshape(y.shape).double().numpy()
    return np.sqrt(ab) * y.double().numpy() + np.sqrt(1 - ab) * eps


def tiny_prior() -> TinyADM:
    """The tiny ADM network (learned variance), on the paper's linear schedule."""
    return TinyADM(LinearSchedule(), tiny_adm_state())


@pytest.fixture(scope="module")
def prior():
    return tiny_prior()


@pytest.mark.parametrize("kind", ["inpaint", "sr", "denoise"])
def test_each_step_is_the_official_projection_step(prior, schedule, kind):
    physics, y = make_problem(kind)
    sampler = ScoreSDE(steps=3, variance="learned")
    ts = sampler.timesteps(schedule).tolist()
    xs, draws, result = run_recorded(sampler, physics, y, prior, schedule)
    arr = guided_diffusion_arrays(set(ts))
    ab = np.cumprod(1 - arr["beta"])  # the respaced process's ᾱ: the original ᾱ at the kept timesteps
    worst = 0.0
    for i, t in enumerate(ts):
        k = len(ts) - 1 - i  # guided-diffusion indexes the respaced steps upwards
        x = xs[i].double().numpy()
        eps, v = network(prior, xs[i], t)
        sample = p_sample(arr, k, official_x0(ab[k], x, eps), x, v, draws[1 + 2 * i].double().numpy())
        expected = official_projection(kind, physics, sample, noised_measurement(y, ab[k], draws[2 + 2 * i]))
        worst = max(worst, disagreement(xs[i + 1], expected))
    assert worst <= TOL, worst
    assert result.nfe == 3 and (result.diverged_at == -1).all()


def test_each_ddim_step_is_the_official_ddim_projection_step(prior, schedule):
    """variance=eta: the official code's DDIM sampler (`DDIM.p_sample`, η per sample here) then the projection."""
    physics, y = make_problem("inpaint")
    eta = torch.tensor([0.3, 1.0])
    sampler = ScoreSDE(steps=10, eta=eta, variance="eta")
    ts = sampler.timesteps(schedule).tolist()
    xs, draws, _ = run_recorded(sampler, physics, y, prior, schedule)
    ab_all = schedule.alphas_cumprod.numpy()
    e = eta.double().numpy()[:, None, None, None]
    worst = 0.0
    for i, t in enumerate(ts):
        ab, ab_prev = ab_all[t], (ab_all[ts[i + 1]] if i + 1 < len(ts) else 1.0)
        x = xs[i].double().numpy()
        x0 = official_x0(ab, x, network(prior, xs[i], t)[0])
        eps = (np.sqrt(1 / ab) * x - x0) / np.sqrt(1 / ab - 1)  # `predict_eps_from_x_start`
        sigma = e * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev)
        sample = x0 * np.sqrt(ab_prev) + np.sqrt(1 - ab_prev - sigma**2) * eps + sigma * draws[1 + 2 * i].numpy()
        expected = official_projection("inpaint", physics, sample, noised_measurement(y, ab, draws[2 + 2 * i]))
        worst = max(worst, disagreement(xs[i + 1], expected))
    assert worst <= TOL, worst


@pytest.mark.parametrize("kind", ["inpaint", "sr", "denoise"])
def test_the_projection_meets_the_noised_measurement_and_keeps_the_rest(schedule, kind):
    """A x' = A A⁺ y_t (y_t itself where A is onto; an inpainting y_t's hidden pixels are not measured), and
    x' − x lies in the row space of A: the null-space part of x is untouched."""
    physics, y = make_problem(kind)
    y = y.double()
    ts = schedule.respaced(10)
    project = Projection(physics, y, schedule, ts, 3 * SIZE * SIZE)
    gen = torch.Generator().manual_seed(3)
    x, eps = (torch.randn(2, 3, SIZE, SIZE, generator=gen, dtype=torch.float64) for _ in range(2))
    x_new, y_t = project(4, x, eps), project.noised(4, eps)
    assert (physics.A(x_new) - physics.A(physics.init(y_t))).abs().max() <= 1e-10
    if kind != "inpaint":
        assert (physics.A(x_new) - y_t).abs().max() <= 1e-10
    step = x_new - x
    assert (step - physics.init(physics.A(step))).abs().max() <= 1e-10  # A⁺A is the identity on it
    ab = schedule.alpha_bar(ts[4])
    assert torch.allclose(y_t, ab.sqrt() * y + (1 - ab).sqrt() * eps.flatten(1)[:, : y[0].numel()].view_as(y))


@pytest.mark.parametrize(
    ("physics", "message"),
    [
        (PhaseRetrieval(), "sampler=score_sde replaces the measured part of x, which needs a linear operator; "
                           "PhaseRetrieval is not linear (use sampler=dps)"),
        (GaussianBlur(), "sampler=score_sde needs the operator's exact pseudo-inverse A⁺ (inpainting, "
                         "super-resolution, denoising); GaussianBlur has none (use sampler=dps)"),
        (MotionBlur(), "MotionBlur has none"),
    ],
)  # fmt: skip
def test_operators_without_an_exact_projection_are_refused(prior, physics, message):
    with pytest.raises(ConfigError) as err:
        ScoreSDE().check(prior, physics)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_learned_variance_needs_a_prior_that_has_it(schedule):
    from dps_exp.denoisers import StationaryGaussian

    with pytest.raises(ConfigError, match="use sampler.variance=eta"):
        ScoreSDE().check(StationaryGaussian(schedule), Denoising())
    ScoreSDE(variance="eta").check(StationaryGaussian(schedule), Denoising())


POINTS = {  # four sweep points, zipped
    "seed": [0, 0, 3, 0],
    "physics.mask": [0.1, 0.5, 0.3, 0.2],
    "physics.noise.sigma": [0.05, 0.05, 0.1, 0.0],
    "sampler.eta": [1.0, 0.0, 0.5, 1.0],
}


def batched_equals_alone(tmp_path, sampler: str, points: dict) -> None:
    """Each point's reconstruction is the same alone and batched with the other points (≤ 1e-5)."""
    lists = [f"{k}=[{','.join(map(str, v))}]" for k, v in points.items()]
    overrides = [f"sampler={sampler}", "sampler.variance=eta", "sampler.steps=20", *lists]
    cfg = compose(["denoiser=gaussian", "data.size=16", "logger=none", "progress=false", *overrides])
    run = Run(OmegaConf.to_container(cfg, resolve=True), tmp_path)
    item = run.data.items()[0]
    together = run.run_batch([(item, p, 0) for p in run.points])
    for b, p in enumerate(run.points):
        alone = run.run_batch([(item, p, 0)])
        assert (together[b] - alone[0]).abs().max().item() <= 1e-5
    assert (together[0] - together[1]).abs().max().item() > 1e-2  # the points really did differ


def test_batched_equals_alone(tmp_path):
    batched_equals_alone(tmp_path, "score_sde", POINTS)


def test_cli_runs_super_resolution_end_to_end(tmp_path):
    proc = cli("sampler=score_sde", "sampler.variance=eta", "sampler.steps=20", "denoiser=gaussian", "data.size=32",
               "data.limit=1", "logger=none", "progress=false", "physics=super_resolution", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results,) = tmp_path.glob("outputs/*/*/results.jsonl")
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["status"] == "ok" and row["nfe"] == 20 and row["metrics"]["psnr"] > 10


def test_cli_refuses_phase_retrieval_in_one_line(tmp_path):
    proc = cli("sampler=score_sde", "denoiser=gaussian", "data.size=32", "data.limit=1", "logger=none",
               "progress=false", "physics=phase_retrieval", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: sampler=score_sde replaces the measured part of x, which needs a linear operator; PhaseRetrieval is "
        "not linear (use sampler=dps)"
    ]
