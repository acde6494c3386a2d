"""Finding the directory of an earlier run or sweep with the same overrides, for `resume=true`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf


def resume_requested(overrides: Sequence[str]) -> bool:
    """Whether the overrides set `resume` true, however written (`resume=true`, `+resume=True`, `++resume=TRUE`)."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return False  # Hydra reports the bad override itself
    return any(o.key_or_group == "resume" and o.value() is True for o in parsed)


def without_resume(overrides: Sequence[str]) -> list[str]:
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != "resume"]


def sweep_overrides(hydra: Mapping) -> list[str]:
    """What defines a sweep on the command line: its task overrides and any `hydra.sweeper.params` given there."""
    params = [o for o in hydra["overrides"]["hydra"] if o.lstrip("+").startswith("hydra.sweeper.params")]
    return [*hydra["overrides"]["task"], *params]


def previous_dir(root: Path, overrides: Sequence[str], sweep: bool) -> Path | None:
    """The newest `root/<date>/<time>` whose recorded task overrides equal `overrides` (resume ignored).

    Runs record them in `.hydra/overrides.yaml`, sweeps in `multirun.yaml` (`sweep_overrides`).
    """
    wanted = sorted(without_resume(overrides))
    candidates = sorted(
        (p for p in Path(root).glob("*/*") if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for directory in candidates:
        try:
            if sweep:
                recorded = sweep_overrides(OmegaConf.load(directory / "multirun.yaml").hydra)
            else:
                recorded = OmegaConf.load(directory / ".hydra" / "overrides.yaml")
        except (OSError, ValueError, AttributeError):
            continue
        if sorted(without_resume(list(recorded))) == wanted:
            return directory
    return None
