"""Shared fixtures: small networks and paths. Everything here is offline and CPU-only."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from dps_exp.denoisers.base import Denoiser
from dps_exp.schedule import LinearSchedule

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("WANDB_MODE", None)
torch.set_num_threads(min(2, torch.get_num_threads()))


class TinyEps(Denoiser):
    """A small random-weight ε-network with a timestep embedding: enough to exercise every code path."""

    def __init__(self, schedule, channels: int = 3, width: int = 16, seed: int = 0):
        super().__init__(schedule)
        torch.manual_seed(seed)
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.emb = nn.Linear(1, width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def network(self, x_t, t):
        h = self.inp(x_t) + self.emb(t.float().view(-1, 1) / 1000.0)[:, :, None, None]
        return self.out(torch.tanh(h))


@pytest.fixture
def schedule():
    return LinearSchedule()


@pytest.fixture
def tiny(schedule):
    return TinyEps(schedule).eval().requires_grad_(False)


@pytest.fixture(scope="session")
def planted_torch_home(tmp_path_factory):
    from tests.helpers import plant_backbones

    home = tmp_path_factory.mktemp("torch_home")
    plant_backbones(home)
    return home


@pytest.fixture
def backbones(planted_torch_home, monkeypatch):
    """TORCH_HOME holding random LPIPS (VGG, AlexNet) and FID (Inception) backbones under their real names."""
    monkeypatch.setenv("TORCH_HOME", str(planted_torch_home))
    return planted_torch_home / "hub" / "checkpoints"
