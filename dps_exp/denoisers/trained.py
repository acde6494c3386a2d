"""Priors trained by scripts/train_prior.py: safetensors weights with a JSON card, bundled or on disk.

`natural32`, shipped in dps_exp/assets, lets DPS run on a learned prior with no GPU and no network.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dps_exp import ASSETS
from dps_exp.denoisers.adm import ADMConfig, ADMUNet
from dps_exp.denoisers.base import NetworkDenoiser
from dps_exp.denoisers.pretrained import build_network
from dps_exp.denoisers.weights import Checkpoint, CheckpointError, file_sha256
from dps_exp.errors import ConfigError
from dps_exp.schedule import LinearSchedule, Schedule


def locate(weights: str) -> tuple[Path, Path]:
    """(weights file, card) for a bundled name (`natural32`) or a path to NAME.safetensors or NAME.json."""
    p = Path(weights).expanduser()
    if p.suffix not in (".safetensors", ".json"):
        if "/" in weights or not (ASSETS / f"{weights}.json").is_file():
            bundled = sorted(c.stem for c in ASSETS.glob("*.json"))
            raise CheckpointError(
                f"denoiser.weights={weights!r} is neither a bundled prior ({', '.join(bundled)}) nor a "
                ".safetensors/.json file of scripts/train_prior.py"
            )
        p = ASSETS / f"{weights}.json"
    card = p.with_suffix(".json")
    if not p.is_file():
        training = p.parent / "checkpoint.pt"
        hint = f" ({training} is there: a training not finished; run it again to finish and export it)"
        raise CheckpointError(f"denoiser.weights={weights!r}: no such file" + (hint if training.is_file() else ""))
    if not card.is_file():
        raise CheckpointError(f"{card} is missing: a trained prior's weights come with their card beside them")
    return card.parent / read_card(card)["weights"]["file"], card


def read_card(card: Path) -> dict:
    try:
        content = json.loads(card.read_text())
        if not {"file", "sha256"} <= set(content["weights"]):
            raise KeyError("weights.file, weights.sha256")
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"the card {card} is unreadable ({type(err).__name__}: {err}): scripts/train_prior.py writes it beside "
            "the weights; export the prior again, or restore the file"
        ) from None
    return content


def load_card(weights: str) -> tuple[Checkpoint, dict]:
    """The weights file checked against the sha256 its card records, and the card."""
    path, card_path = locate(weights)
    card = read_card(card_path)
    if not path.is_file():
        raise CheckpointError(f"{path} (named by {card_path}) does not exist")
    sha = file_sha256(path)
    if sha != card["weights"]["sha256"]:
        raise CheckpointError(
            f"{path} has sha256 {sha}, but its card {card_path.name} records {card['weights']['sha256']}: "
            "the file is corrupt or not the one the card describes (reinstall the package, or retrain)"
        )
    return Checkpoint(path, sha, str(path)), card


class TrainedADM(NetworkDenoiser):
    """An ADM UNet trained by `dps-train-prior` (ε-prediction, fixed variance: `sampler.variance=eta`).

    `weights`: a bundled prior's name (`natural32`: 32×32 crops of natural photographs, dps_exp/assets) or
    the path of a NAME.safetensors (or its card NAME.json) written by the training script. The file must
    match the sha256 on its card, and the run's schedule the one it was trained with. The network is fully
    convolutional (with attention at its coarsest level): it runs on any H, W divisible by 2^(levels − 1).

    Args:
        weights: a bundled prior's name, or the path of a `NAME.safetensors` (its card `NAME.json` beside it) written
            by `scripts/train_prior.py`; the file must match the sha256 on its card
        checkpointing: activation checkpointing: less memory at large batch, more time
    """

    def __init__(self, schedule: Schedule, weights: str = "natural32", checkpointing: bool = False):
        ckpt, card = load_card(weights)
        trained = LinearSchedule(**{k: v for k, v in card["schedule"].items() if k != "kind"})
        if trained.betas.shape != schedule.betas.shape or not torch.allclose(trained.betas, schedule.betas.cpu()):
            raise ConfigError(
                f"denoiser.weights={weights!r} was trained on the schedule {card['schedule']}; "
                "the run's schedule differs (use schedule=linear with its defaults)"
            )
        net, provenance = build_network(
            ADMUNet, ADMConfig.from_dict(card["architecture"]), ckpt, checkpointing=checkpointing
        )
        super().__init__(schedule, net, net.size_multiple)
        self.card = card
        self.provenance = provenance
