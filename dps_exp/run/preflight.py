"""Command-line mistakes Hydra would answer with several lines (and exit 1), answered in one line before Hydra
starts, so that nothing is written: an unknown key, an unknown option of a group, an override that does not
parse, an output directory that cannot be made."""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

from dps_exp.config import TARGET, parameters, target_of

FLAGS_WITH_VALUE = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun")


def task_overrides(argv: Sequence[str]) -> list[str]:
    """The overrides that make the task config: not flags, not Hydra's own settings but its search path (which
    may add config options)."""
    out, skip = [], False
    for arg in argv:
        if skip or arg.startswith("-"):
            skip = arg in FLAGS_WITH_VALUE
            continue
        key = arg.lstrip("+~").split("=", 1)[0]
        if key == "hydra.searchpath" or not key.startswith(("hydra.", "hydra/")):
            out.append(arg)
    return out


def first_values(overrides: list[str]) -> list[str]:
    """Each sweep (`a=1,2`, `range(…)`) as its first value, so one job's config can be composed; searches
    (`interval(…)`, Optuna's) are left out."""
    out = []
    for override, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides), strict=True):
        if not parsed.is_sweep_override():
            out.append(override)
            continue
        try:
            first = next(iter(parsed.sweep_string_iterator()))
        except (StopIteration, Exception):  # an interval or another search space: no first value
            continue
        out.append(f"{override.split('=', 1)[0]}={first}")
    return out


def valid_keys(spec: dict, parent: str) -> list[str]:
    """The keys a node of the composed config takes: its class's constructor parameters, or the keys it has."""
    node = spec
    for part in filter(None, parent.split(".")):
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return []
    if TARGET in node:
        supplied = getattr(target_of(node), "SUPPLIED", ())
        return [k for k in parameters(target_of(node)) if k not in supplied]
    return [k for k in node if k != "hydra"]


def unknown_key(key: str, overrides: list[str], compose) -> str:
    parent, _, name = key.rpartition(".")
    rest = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != key]
    try:
        keys = valid_keys(compose(rest), parent)
    except Exception:  # the rest does not compose either: Hydra will say why
        keys = []
    where = parent or "the top level"
    close = difflib.get_close_matches(name, keys, n=1)
    hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
    return f"{key} is not a key of {where}{hint}; valid keys: {', '.join(keys) or 'none'}"


def hydra_problem(argv: Sequence[str], compose) -> str | None:
    """One line for an override Hydra would refuse, or None. `compose(overrides)` composes the task config."""
    overrides = task_overrides(argv)
    try:
        composable = first_values(overrides)
    except OverrideParseException as err:
        return f"cannot parse the overrides: {str(err).splitlines()[0]}"
    try:
        compose(composable)
    except MissingConfigException as err:
        group, _, option = (err.missing_cfg_file or "").rpartition("/")
        options = list(err.options or [])
        if not group or not options:
            return str(err).splitlines()[0]
        close = difflib.get_close_matches(option, options, n=1)
        hint = f" (did you mean {group}={close[0]}?)" if close else ""
        return f"{group}={option} is not an option of {group}{hint}; options: {', '.join(options)}"
    except ConfigCompositionException as err:
        match = re.match(r"Could not override '([^']+)'", str(err))
        if match:
            return unknown_key(match.group(1), composable, compose)
        return str(err).splitlines()[0]
    return None


def unwritable_output(argv: Sequence[str]) -> str | None:
    """Why the run or sweep directory (named on the command line, or the default's folder, outputs/ or
    multirun/) cannot be made (a file in its path, a read-only place), or None."""
    key = "hydra.sweep.dir" if {"-m", "--multirun"} & set(argv) else "hydra.run.dir"
    named = [a.lstrip("+").partition("=")[2] for a in argv if a.lstrip("+").startswith(key + "=")]
    value = named[-1] if named else "multirun" if key == "hydra.sweep.dir" else "outputs"
    if "${" not in value:
        directory = Path(value)
        made = [d for d in (directory, *directory.parents) if not d.exists()]  # removed again: a refusal leaves none
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / ".write-test"
            probe.touch()
            probe.unlink()
        except OSError as err:
            return f"cannot write into {key}={value}: {err.strerror or err}: choose another directory"
        finally:
            for d in made:  # deepest first
                with contextlib.suppress(OSError):
                    d.rmdir()
    return None
