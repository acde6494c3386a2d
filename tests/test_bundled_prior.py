"""The prior shipped in the package: its file is the one its card describes, it never saw the demo's
photographs, and it is trained (it denoises held-out crops far better than doing nothing)."""

from __future__ import annotations

import json

import pytest
import torch

from dps_exp.denoisers.trained import ASSETS, TrainedADM
from dps_exp.denoisers.weights import file_sha256
from dps_exp.errors import ConfigError
from dps_exp.physics.denoise import Denoising
from dps_exp.samplers.dps import DPS
from dps_exp.schedule import LinearSchedule
from dps_exp.train.crops import DEMO_PHOTOS, heldout_crops

CARD = json.loads((ASSETS / "natural32.json").read_text())


def test_the_bundled_file_matches_its_card_and_fits_in_the_package():
    weights = ASSETS / CARD["weights"]["file"]
    assert file_sha256(weights) == CARD["weights"]["sha256"]
    assert weights.stat().st_size == CARD["weights"]["bytes"] <= 10 * 2**20
    assert set(DEMO_PHOTOS) <= set(CARD["data"]["holdout"])
    assert not set(DEMO_PHOTOS) & set(CARD["data"]["images"])
    assert CARD["architecture"]["out_channels"] == 3 and CARD["parameters"] < 2_000_000


@pytest.mark.parametrize("size", [32, 64])
def test_it_denoises_held_out_crops(schedule, size):
    prior = TrainedADM(schedule).eval()
    crops, _ = heldout_crops(per_image=2, side=4 * size, crop=size, seed=3)
    x0 = crops * 2 - 1
    gen = torch.Generator().manual_seed(0)
    for t in (100, 400):
        a, s = schedule.alphas_cumprod[t].sqrt().float(), (1 - schedule.alphas_cumprod[t]).sqrt().float()
        x_t = a * x0 + s * torch.randn(x0.shape, generator=gen)
        with torch.no_grad():
            x0_hat = prior(x_t, torch.full((x0.shape[0],), t)).x0
        naive = ((x_t / a - x0) ** 2).mean()
        assert ((x0_hat - x0) ** 2).mean() < 0.25 * naive, t


def test_it_needs_its_own_schedule_and_fixed_variance():
    with pytest.raises(ConfigError, match="schedule"):
        TrainedADM(LinearSchedule(beta_end=0.03))
    with pytest.raises(ConfigError, match="sampler.variance=learned needs a prior with learned variance"):
        DPS(variance="learned").check(TrainedADM(LinearSchedule()), Denoising())  # the Run asks before any work
