"""The DPS paper's priors: guided-diffusion UNets with published weights (ε and learned-range variance)."""

from __future__ import annotations

import logging
from typing import Literal

import torch

from dps_exp.denoisers.adm import ARCHITECTURES, ADMUNet
from dps_exp.denoisers.base import NetworkDenoiser
from dps_exp.denoisers.weights import Checkpoint, CheckpointError, hub_file, load_state_dict, local_file
from dps_exp.schedule import Schedule

log = logging.getLogger(__name__)


class PretrainedADM(NetworkDenoiser):
    """An ADM UNet (`architecture`: `ffhq` or `imagenet`, dps_facts.md §2) with weights from the Hugging Face
    Hub (`repo_id`/`filename` at `revision`) or from a local `checkpoint` file. `sha256`, when given, pins
    the exact file. `checkpointing` trades time for memory at large batch (activation checkpointing).
    """

    learned_variance = True

    def __init__(
        self,
        schedule: Schedule,
        architecture: Literal["ffhq", "imagenet"] = "ffhq",
        repo_id: str = "deepinv/diffunet",
        filename: str = "diffusion_ffhq_10m.pt",
        revision: str | None = None,
        checkpoint: str | None = None,
        sha256: str | None = None,
        checkpointing: bool = False,
    ):
        ckpt = local_file(checkpoint) if checkpoint else hub_file(repo_id, filename, revision)
        if sha256 is not None and ckpt.sha256 != sha256:  # the pin, for a local file and a Hub one alike
            raise CheckpointError(f"{ckpt.source} has sha256 {ckpt.sha256}, expected {sha256} (denoiser.sha256)")
        net, provenance = build_network(ADMUNet, ARCHITECTURES[architecture], ckpt, checkpointing=checkpointing)
        super().__init__(schedule, net, net.size_multiple)
        self.provenance = provenance


class RandomADM(NetworkDenoiser):
    """An ADM UNet of the named architecture with random weights: for timing and plumbing only, its
    reconstructions mean nothing. (PyTorch's default initialisation, plus small random values where
    guided-diffusion initialises to zero, so every layer does real work and activations stay O(1).)"""

    learned_variance = True

    def __init__(
        self,
        schedule: Schedule,
        architecture: Literal["ffhq", "imagenet"] = "ffhq",
        seed: int = 0,
        checkpointing: bool = False,
    ):
        log.warning("denoiser=random_adm: random weights, for timing and plumbing only")
        torch.manual_seed(seed)
        net = ADMUNet(ARCHITECTURES[architecture], checkpointing=checkpointing)
        with torch.no_grad():
            for p in net.parameters():
                if not p.any():
                    p.normal_(0.0, 1e-2)
        super().__init__(schedule, net, net.size_multiple)
        self.provenance = {"source": f"random:{architecture}:seed={seed}", "sha256": None}


def build_network(cls, cfg, ckpt: Checkpoint, **kwargs) -> tuple[torch.nn.Module, dict]:
    """Construct on the meta device (no time spent on a random init) and take the checkpoint's tensors (cast to
    the network's float32 where the file stores another float dtype); returns the network and its provenance."""
    with torch.device("meta"):
        net = cls(cfg, **kwargs)
    return net, load_state_dict(net, ckpt, assign=True)
