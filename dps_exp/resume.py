"""Finding the directory of an earlier run or sweep with the same overrides, for `resume=true`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

RESUME_FLAGS = {"resume=true", "resume=True", "+resume=true"}


def without_resume(overrides: Sequence[str]) -> list[str]:
    return [o for o in overrides if not o.lstrip("+").startswith("resume=")]


def previous_dir(root: Path, overrides: Sequence[str], sweep: bool) -> Path | None:
    """The newest `root/<date>/<time>` whose recorded task overrides equal `overrides` (resume ignored).

    Runs record them in `.hydra/overrides.yaml`, sweeps in `multirun.yaml` (`hydra.overrides.task`).
    """
    wanted = sorted(without_resume(overrides))
    candidates = sorted(
        (p for p in Path(root).glob("*/*") if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for directory in candidates:
        try:
            if sweep:
                recorded = OmegaConf.load(directory / "multirun.yaml").hydra.overrides.task
            else:
                recorded = OmegaConf.load(directory / ".hydra" / "overrides.yaml")
        except (OSError, ValueError, AttributeError):
            continue
        if sorted(without_resume(list(recorded))) == wanted:
            return directory
    return None
