"""Every `python -m dps_exp.run` command in the README and docs/ composes and validates, job by job, and every
`python scripts/train_prior.py` command composes.

The commands are read as bash would run them: continuation lines joined, variables set earlier in the same
code block (and `for task in …` loops) substituted, environment prefixes dropped, and multiruns expanded into
their jobs by Hydra's own parser and the sweeper's expansion (the basic sweeper's). `...` stands for "your other
overrides" and is dropped.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from dps_exp.run.cli import CONF_DIR
from dps_exp.run.settings import validate
from hydra_plugins.dps_exp_sweeper.vectorized import cartesian
from tests.helpers import compose

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
ENVIRONMENT = {"HOME": "/home/user"}
PROGRAMS = {
    "python -m dps_exp.run": "config",
    "dps-run": "config",
    "dps-train-prior": "train_prior",
    "python scripts/train_prior.py": "train_prior",
}  # their configs


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands(block: str, variables: dict[str, str]) -> list[tuple[str, list[str]]]:
    """The Hydra commands of a bash block: (config name, the arguments bash would pass). `variables` holds
    those set so far in the file (a later block may use an earlier one's) and gains this block's."""
    loops, found = [{}], []
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        line = line.split(" #")[0].strip()
        if m := re.fullmatch(r"([A-Z_]+)=(\S+|\"[^\"]*\")", line):  # VAR=value on its own line
            variables[m[1]] = m[2].strip('"')
        elif m := re.fullmatch(r"for (\w+) in (.*); do", line):
            loops = [{m[1]: value} for value in m[2].split()]
        elif line == "done":
            loops = [{}]
        for program, config in PROGRAMS.items():
            if program in line:
                for loop in loops:
                    values = {**variables, **loop}
                    expanded = re.sub(r"\$(\w+)", lambda v, values=values: values[v[1]], line)
                    found.append((config, shlex.split(expanded.split(program, 1)[1])))
    return found


def documented() -> list[tuple[str, str, list[str]]]:
    out = []
    for path in DOCS:
        variables = dict(ENVIRONMENT)
        for block in code_blocks(path.read_text()):
            for config, args in commands(block, variables):
                out.append((f"{path.relative_to(ROOT)}: {config} {' '.join(args)}", config, args))
    return out


def jobs(args: list[str]) -> list[list[str]]:
    """The jobs Hydra would run for these arguments (one for a single run)."""
    overrides = [a for a in args if a not in ("-m", "--multirun", "...") and not a.endswith("=...")]
    if "-m" not in args and "--multirun" not in args:
        return [overrides]
    parsed = OverridesParser.create().parse_overrides(overrides)
    return cartesian(parsed)


def test_the_docs_hold_commands():
    found = documented()
    assert len(found) > 20
    assert any("experiment=paper/imagenet_sr4" in " ".join(args) for _, _, args in found)  # a loop was expanded
    assert any(config == "train_prior" for _, config, _ in found)


def test_a_tilde_path_is_caught():
    """Bash leaves `key=~/x` alone (not an assignment) and Hydra's grammar rejects `~`: the docs use $HOME."""
    with pytest.raises(Exception, match="data.root=~/faces"):
        compose(["data=folder", "data.root=~/faces"])


@pytest.mark.parametrize("where, config, args", documented(), ids=[w for w, _, _ in documented()])
def test_documented_command_composes_and_validates(where, config, args):
    for job in jobs(args):
        if config == "config":
            validate(compose(job))
        else:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                hydra_compose(config_name=config, overrides=job)
