"""Our DPS step against deepinv 0.4.0's `DPS`, the tutorial's loop, iterate by iterate.

deepinv drives a [0, 1] denoiser D(x, σ); we wrap our ε-network so both run the same network on the same
measurement with the same noise draws. Step by step, because DPS under a random network is chaotic: the
~3e-5 a step leaves from deepinv's [0, 1] round trip and float32 schedule grows over a long trajectory,
while a real bug (an off-by-one timestep, a wrong coefficient) shows up as 1e-2 or more in one step.
"""

from __future__ import annotations

import deepinv as dinv
import pytest
import torch
from torch import nn

from dps_exp.denoisers import StationaryGaussian
from dps_exp.physics import Noise, RandomInpainting
from dps_exp.samplers.dps import DPS, guidance

TOL = 1e-4


class DeepinvView(nn.Module):
    """Our ε-network seen through deepinv's denoiser convention: x in [0, 1], σ on the [0, 1] scale."""

    def __init__(self, denoiser, schedule):
        super().__init__()
        self.denoiser = denoiser
        self.ab = schedule.alphas_cumprod.float()

    def forward(self, x, sigma):
        sigma = torch.as_tensor(sigma).flatten().expand(x.shape[0]) * 2  # σ_t = √(1−ᾱ)/√ᾱ
        t = (self.ab[:, None] - 1 / (1 + sigma[None, :] ** 2)).abs().argmin(dim=0)
        x_t = (2 * x - 1) * self.ab[t].sqrt().view(-1, 1, 1, 1)
        return (self.denoiser(x_t, t).x0 + 1) / 2


def deepinv_trajectory(tiny, schedule, y, mask, steps, eta, monkeypatch):
    """deepinv's iterates and the noise it drew (x_T first, then one draw per step)."""
    draws = []
    randn_like = torch.randn_like

    def recording(x, *args, **kwargs):
        draws.append(randn_like(x, *args, **kwargs))
        return draws[-1]

    monkeypatch.setattr(torch, "randn_like", recording)
    physics = dinv.physics.Inpainting(img_size=tuple(y.shape[1:]), mask=mask, device="cpu")
    model = dinv.sampling.DPS(
        DeepinvView(tiny, schedule),
        data_fidelity=dinv.optim.L2(),
        max_iter=steps,
        eta=eta,
        save_iterates=True,
    )
    xs = model(y, physics)
    monkeypatch.setattr(torch, "randn_like", randn_like)
    return [x.detach() for x in xs], draws


@pytest.fixture
def problem():
    torch.manual_seed(1)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    physics = RandomInpainting(mask=0.3, noise=Noise(sigma=0.05))
    physics.draw(x.shape, [torch.Generator().manual_seed(i) for i in range(2)], torch.device("cpu"))
    y = physics.measure(x, [torch.Generator().manual_seed(10 + i) for i in range(2)])
    return physics, y


@pytest.mark.parametrize("steps", [10, 50, 200])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_each_step_matches_deepinv(tiny, schedule, problem, steps, eta, monkeypatch):
    physics, y = problem
    xs, draws = deepinv_trajectory(tiny, schedule, y, physics.m.expand_as(y), steps, eta, monkeypatch)
    sampler = DPS(steps=steps, eta=eta)  # default step_size 1/√2 is deepinv's L2().sqrt()
    ts = sampler.timesteps(schedule)
    update = sampler.update_rule(schedule, ts, y.shape[0])
    assert len(xs) == len(ts) + 1
    worst = 0.0
    for i, t in enumerate(ts):
        pred, g = guidance(xs[i], t.expand(2), y, physics, tiny)
        ours = update(i, xs[i], pred, draws[i + 1]) - sampler.step_size * g
        worst = max(worst, (ours - xs[i + 1]).abs().max().item())
    assert worst <= TOL, f"worst step disagreement {worst:.2e}"


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_whole_trajectory_matches_deepinv(tiny, schedule, problem, eta, monkeypatch):
    """10 steps end to end on the random network. (At η = 0 this network's x̂0 = (x_t − √(1−ᾱ)ε)/√ᾱ is
    amplified ~150× at early steps and sits on the clip boundary, so 1e-6 differences flip a clip gate;
    the Gaussian-prior trajectories below cover η = 0.)"""
    physics, y = problem
    xs, draws = deepinv_trajectory(tiny, schedule, y, physics.m.expand_as(y), 10, eta, monkeypatch)
    noise = iter(d.detach() for d in draws)
    result = DPS(steps=10, eta=eta).sample(y, physics, tiny, schedule, noise=lambda: next(noise))
    assert (result.x - xs[-1]).abs().max().item() <= TOL
    assert (result.diverged_at == -1).all()


@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_whole_trajectory_on_gaussian_prior_matches_deepinv(schedule, problem, eta, steps, monkeypatch):
    physics, y = problem
    prior = StationaryGaussian(schedule)
    xs, draws = deepinv_trajectory(prior, schedule, y, physics.m.expand_as(y), steps, eta, monkeypatch)
    noise = iter(d.detach() for d in draws)
    result = DPS(steps=steps, eta=eta).sample(y, physics, prior, schedule, noise=lambda: next(noise))
    assert (result.x - xs[-1]).abs().max().item() <= TOL


def test_an_off_by_one_timestep_is_caught(tiny, schedule, problem, monkeypatch):
    """The tolerance is tight enough to see a real bug: shifting t by one stride breaks the comparison."""
    physics, y = problem
    xs, draws = deepinv_trajectory(tiny, schedule, y, physics.m.expand_as(y), 10, 1.0, monkeypatch)
    sampler = DPS(steps=10, eta=1.0)
    ts = sampler.timesteps(schedule)
    update = sampler.update_rule(schedule, ts, 2)
    i = 3
    pred, g = guidance(xs[i], (ts[i] - 100).expand(2), y, physics, tiny)
    ours = update(i, xs[i], pred, draws[i + 1]) - sampler.step_size * g
    assert (ours - xs[i + 1]).abs().max().item() > 1e-2
