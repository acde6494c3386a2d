"""Shared fixtures: small networks and paths. Everything here is offline and CPU-only."""

from __future__ import annotations

import os
import socket

import pytest
import torch
from torch import nn

from dps_exp.denoisers.adm import ADMConfig, ADMUNet
from dps_exp.denoisers.base import NetworkDenoiser
from dps_exp.schedule import LinearSchedule

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("WANDB_MODE", None)
if os.environ.get("PYTEST_XDIST_WORKER"):  # the suite's workers share the cores: one thread each, children too
    os.environ["OMP_NUM_THREADS"] = "1"  # (two OpenMP teams spinning on two cores slow a convolution 30×)
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _fresh_batch_memory(monkeypatch):
    """The batch sizes `auto` remembers for the process (halved after running out of memory) start empty in each
    test, so an earlier test's injected out-of-memory error does not shrink a later test's batches."""
    from dps_exp.run import acceleration

    monkeypatch.setattr(acceleration, "_BATCHES", {})


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Every test starts from the same global RNG state, so a test's random inputs do not depend on which
    tests ran before it (a draw that misses a tolerance then fails every time, not one run in three)."""
    torch.manual_seed(0)


class TinyNet(nn.Module):
    """A small ε-network with a timestep embedding."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.emb = nn.Linear(1, width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x_t, t):
        h = self.inp(x_t) + self.emb(t.float().view(-1, 1) / 1000.0)[:, :, None, None]
        return self.out(torch.tanh(h))


class TinyEps(NetworkDenoiser):
    """A small random-weight ε-network with a timestep embedding: enough to exercise every code path."""

    def __init__(self, schedule, channels: int = 3, width: int = 16, seed: int = 0):
        torch.manual_seed(seed)
        super().__init__(schedule, TinyNet(channels, width))


TINY_ADM = ADMConfig(
    image_size=16, model_channels=32, channel_mult=(1, 2), attention_resolutions=(8,), num_head_channels=32
)


class TinyADM(NetworkDenoiser):
    """The ADM UNet (GroupNorm, attention, learned variance) at a size that runs a step in milliseconds."""

    learned_variance = True

    def __init__(self, schedule, state):
        net = ADMUNet(TINY_ADM)
        net.load_state_dict(state)
        super().__init__(schedule, net, net.size_multiple)
        self.eval().requires_grad_(False)


def tiny_adm_state() -> dict:
    """Seeded random weights for TinyADM, none zero (guided-diffusion zero-initialises its output layers)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return {k: torch.randn_like(v) * 0.02 for k, v in ADMUNet(TINY_ADM).state_dict().items()}


def closed_port() -> int:
    """A local port nothing listens on: a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def _no_backbone_downloads(tmp_path_factory):
    """No test fetches a metric backbone, in this process or in a CLI subprocess: TORCH_HOME is empty (tests that
    score LPIPS or FID plant random backbones with `backbones`) and HTTP(S) goes through a proxy that refuses at
    once, so the default metrics leave LPIPS out as on a machine without network, within milliseconds and never
    downloading 528 MiB of VGG weights on one with network (torch.hub ignores HF_HUB_OFFLINE)."""
    proxy = f"http://127.0.0.1:{closed_port()}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("empty_torch_home")))
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            mp.setenv(name, proxy)
        for name in ("no_proxy", "NO_PROXY"):
            mp.delenv(name, raising=False)
        yield


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
