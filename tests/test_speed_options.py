"""bf16 autocast, channels_last and torch.compile run on the CPU and stay close to fp32, step by step.

Stated tolerance: each DPS step's output (learned-variance update plus guidance) differs from fp32's by at
most 1% in relative RMS with bf16 (bf16 keeps 8 mantissa bits); fp32 options by at most 1e-5 max abs.
Compared per step from the same x_t, because a random network makes whole trajectories chaotic.
"""

from __future__ import annotations

import pytest
import torch

from dps_exp.physics import RandomInpainting
from dps_exp.run.devices import layout_advice
from dps_exp.samplers.consistency import Distance
from dps_exp.samplers.dps import DPS, guidance
from tests.conftest import TinyADM, tiny_adm_state


@pytest.fixture(scope="module")
def state():
    return tiny_adm_state()


def step_outputs(prior, schedule, steps=4):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1
    physics = RandomInpainting(mask=0.3).draw(x.shape, [torch.Generator().manual_seed(i) for i in range(2)], "cpu")
    y = physics.measure(x, [torch.Generator().manual_seed(9 + i) for i in range(2)])
    sampler = DPS(steps=10, variance="learned")
    ts = sampler.timesteps(schedule)
    update = sampler.update_rule(schedule, ts, 2)
    x_t, outs = torch.randn(2, 3, 16, 16, generator=gen), []
    for i in range(steps):
        pred, g = guidance(x_t, ts[i].expand(2), Distance("auto", physics, y), prior)
        outs.append((x_t, update(i, x_t, pred, torch.randn(2, 3, 16, 16, generator=gen)) - sampler.step_size * g))
        x_t = torch.randn(2, 3, 16, 16, generator=gen)  # fresh, so every step starts from the same x_t
    return outs


def relative_rms(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_bf16_and_channels_last_stay_within_tolerance(schedule, state):
    reference = step_outputs(TinyADM(schedule, state), schedule)
    bf16 = TinyADM(schedule, state)
    bf16.accelerate(precision="bf16")
    for (_, ref), (_, got) in zip(reference, step_outputs(bf16, schedule), strict=True):
        assert relative_rms(got, ref) <= 1e-2
    cl = TinyADM(schedule, state)
    cl.accelerate(channels_last=True)
    for (_, ref), (_, got) in zip(reference, step_outputs(cl, schedule), strict=True):
        assert (got - ref).abs().max().item() <= 1e-5


def test_compiled_bf16_channels_last_runs_on_cpu(schedule, state):
    reference = step_outputs(TinyADM(schedule, state), schedule, steps=2)
    fast = TinyADM(schedule, state)
    fast.accelerate(precision="bf16", compile=True, channels_last=True)
    for (_, ref), (_, got) in zip(reference, step_outputs(fast, schedule, steps=2), strict=True):
        assert relative_rms(got, ref) <= 1e-2


def test_eager_channels_last_on_cuda_is_warned_about_and_nothing_else_is():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert "compile=true" in layout_advice(cuda, channels_last=True, compile=False)
    assert layout_advice(cuda, channels_last=True, compile=True) is None
    assert layout_advice(cuda, channels_last=False, compile=False) is None
    assert layout_advice(cpu, channels_last=True, compile=False) is None
