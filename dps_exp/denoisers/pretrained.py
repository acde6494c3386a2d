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
    """The DPS paper's priors: our own implementation of the guided-diffusion (ADM) UNet (dps_facts.md §2) with ε and
    learned-range variance outputs, weights from the Hugging Face Hub (`repo_id`/`filename` at `revision`) or a local
    `checkpoint`, checked against the size and sha256 the Hub reports (a cached copy against the sha256 it was stored
    under) and recorded as `prior` in every result row. A missing file, a failed download, a checksum or state-dict
    mismatch stops the run with what to do.

    Args:
        architecture: `ffhq`: 128 channels, 1 res block, attention at 16 px (93.6 M parameters); `imagenet`: 256
            channels, 2 res blocks, attention at 32, 16, 8 px (552.8 M)
        repo_id: Hugging Face Hub model repository
        filename: file in it (`diffusion_ffhq_10m.pt`: 357 MB; `diffusion_openai.pt`: 2.1 GB)
        revision: a Hub commit (or branch, tag) to pin; null: the latest
        checkpoint: a local file instead of the Hub
        sha256: pin the exact file: a different one stops the run
        checkpointing: activation checkpointing: each block recomputes its activations in the backward pass (less
            memory at large batch, one more forward pass of time)
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
    guided-diffusion initialises to zero, so every layer does real work and activations stay O(1).)

    Args:
        architecture: `ffhq` or `imagenet`, the networks of `denoiser=ffhq` and `denoiser=imagenet`
        seed: seeds the random weights
        checkpointing: activation checkpointing: less memory at large batch, more time
    """

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
