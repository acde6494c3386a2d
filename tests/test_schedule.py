from __future__ import annotations

import pytest
import torch

from dps_exp.schedule import LinearSchedule


def test_linear_schedule_matches_the_tutorial():
    s = LinearSchedule()
    betas = torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64)
    assert torch.allclose(s.alphas_cumprod, (1 - betas).cumprod(0))
    assert s.alpha_bar(torch.tensor([-1])).item() == 1.0


@pytest.mark.parametrize("steps, length, first", [(1000, 1000, 999), (200, 200, 995), (10, 10, 900), (300, 334, 999)])
def test_timesteps_stride_as_the_tutorial(steps, length, first):
    ts = LinearSchedule().timesteps(steps)
    assert len(ts) == length and ts[0].item() == first and ts[-1].item() == 0
    assert ts.tolist() == list(reversed(range(0, 1000, 1000 // steps)))
