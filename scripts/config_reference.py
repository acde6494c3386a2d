"""Writes the README's config reference from the code: `python scripts/config_reference.py [--check]`.

Each config group (a folder of conf/ whose options name a class by `_target_`; conf/hydra/ is Hydra's and stays
hand-written) has a block in README.md between `<!-- config-reference:start GROUP -->` and
`<!-- config-reference:end GROUP -->` (`top` is conf/config.yaml's own keys). The block lists each class the
group's options build, with the first paragraph of its docstring, and a table of its keys: the default (from
each option's YAML, else the signature), what is allowed (from the signature's annotation, in the words the
validation errors use; "per sample" where it carries PER_SAMPLE) and the meaning (the `Args:` entry of the class's
docstring, or of a base class's). Text outside the blocks is hand-written. With --check nothing is written: the
exit status is 1, naming the blocks that differ, when README.md and the code disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import re
import sys
import textwrap
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from hydra import compose, initialize_config_dir
from omegaconf import MISSING, OmegaConf

from dps_exp.config import TARGET, describe, is_per_sample, is_structured, parameters, target_of
from dps_exp.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"
README = ROOT / "README.md"
START, END = "<!-- config-reference:start {} -->", "<!-- config-reference:end {} -->"
BLOCK = re.compile(r"<!-- config-reference:start (\S+) -->\n(.*?)<!-- config-reference:end \1 -->\n", re.S)
TOP = "top"
ABSENT = object()  # a key an option's YAML leaves to the signature's default


class ReferenceGap(UserError):
    """The reference cannot be written (a key without a meaning, a block missing from the README)."""


@dataclass
class Option:
    name: str
    node: dict  # the option's config, composed (its defaults list applied) and unresolved
    comment: str  # the YAML file's opening comment


# ---------------------------------------------------------------------------------------------------------
# What the code and conf/ say


def argument_docs(cls: type) -> dict[str, str]:
    """{argument: meaning} from the `Args:` sections of `cls`'s docstring and its bases' (the nearest wins).

    An entry is `name: text` indented under `Args:`; more deeply indented lines continue it; a blank line or
    a line back at the section's indentation ends the section."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        lines = inspect.cleandoc(klass.__dict__.get("__doc__") or "").splitlines()
        if "Args:" not in lines:
            continue
        name = None
        for line in lines[lines.index("Args:") + 1 :]:
            if not line.startswith(" ") or not line.strip():
                break
            if m := re.fullmatch(r" {4}(\w+): (.*)", line):
                name = m[1]
                docs[name] = m[2].strip()
            elif name is not None:
                docs[name] += " " + line.strip()
    return docs


def summary(cls: type) -> str:
    """The first paragraph of a class's docstring, as one line."""
    return " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].split())


def opening_comment(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            lines.append(line.lstrip("# ").strip())
    return " ".join(lines)


def groups() -> dict[str, list[Option]]:
    """{group path (`physics/noise`): its options}, for every folder of conf/ whose options build a class."""
    found = {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for folder in sorted(p for p in CONF_DIR.rglob("*") if p.is_dir()):
            group = folder.relative_to(CONF_DIR).as_posix()
            files = sorted(folder.glob("*.yaml"))
            if group.split("/")[0] == "hydra" or not any(TARGET in OmegaConf.load(f) for f in files):
                continue
            options = []
            for f in files:
                node = OmegaConf.to_container(compose(config_name=None, overrides=[f"+{group}={f.stem}"]))
                for part in group.split("/"):
                    node = node[part]
                options.append(Option(f.stem, node, opening_comment(f)))
            found[group] = options
    return found


def subgroup_default(folder: Path, option: str, name: str) -> str | None:
    """Which option of the subgroup `name` an option's defaults list picks (following same-group parents)."""
    picked = None
    for entry in OmegaConf.load(folder / f"{option}.yaml").get("defaults", []):
        if isinstance(entry, str) and entry != "_self_":
            picked = subgroup_default(folder, entry, name) or picked
        elif isinstance(entry, Mapping) and name in entry:
            picked = entry[name]
    return picked


# ---------------------------------------------------------------------------------------------------------
# Rendering


def show(value: Any) -> str:
    """A config value as YAML writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, str) and ("${" in value or not value):
        return f"`{value}`" if value else '`""`'
    return str(value)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def default(values: dict[str, Any], parameter: inspect.Parameter) -> str:
    """The default of one key over the options sharing a class: one value, or each option's."""

    def one(value: Any) -> str:
        if value is ABSENT:
            value = parameter.default
        return "required" if value is parameter.empty or value == MISSING else show(value)

    shown = {name: one(v) for name, v in values.items()}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return ", ".join(f"{v} (`{name}`)" for name, v in shown.items())


def rows(cls: type, nodes: dict[str, Any], prefix: str, folder: Path | None) -> list[tuple[str, ...]]:
    """(key, default, allowed, meaning) of every key of `cls`; the keys of nested nodes and dataclasses follow."""
    docs, supplied = argument_docs(cls), set(getattr(cls, "SUPPLIED", ()))
    out, nested = [], []
    for name, (tp, parameter) in parameters(cls).items():
        if name in supplied:
            continue
        key = f"{prefix}.{name}" if prefix else name
        values = {option: node.get(name, ABSENT) for option, node in nodes.items()}
        present = [v for v in values.values() if v is not ABSENT]
        if folder is not None and (folder / name).is_dir():  # a subgroup's node: its own block says its keys
            picked = {option: subgroup_default(folder, option, name) for option in nodes}
            allowed = f"a `{folder.relative_to(CONF_DIR).as_posix()}/{name}` option"
            out.append((key, default(picked, parameter), allowed, meaning(cls, docs, name)))
        elif present and all(isinstance(v, Mapping) and TARGET in v for v in present):
            nested += rows(target_of(present[0]), {o: v for o, v in values.items() if v is not ABSENT}, key, None)
        elif is_structured(tp):  # a dataclass (ADMConfig): its fields are keys, their defaults its own
            given = parameter.default if dataclasses.is_dataclass(parameter.default) else {}
            fields = {o: dataclasses.asdict(given) if v is ABSENT and given else v for o, v in values.items()}
            nested += rows(base_type(tp), {o: {} if v is ABSENT else v for o, v in fields.items()}, key, None)
        else:
            allowed = describe(tp, name) + ("; per sample" if is_per_sample(tp) else "")
            out.append((key, default(values, parameter), allowed, meaning(cls, docs, name)))
    return out + nested


def base_type(tp: Any) -> type:
    """`T` of `Annotated[T, ...]`."""
    return typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp


def meaning(cls: type, docs: dict[str, str], name: str) -> str:
    if name not in docs:
        raise ReferenceGap(
            f"{cls.__module__}.{cls.__qualname__} has no meaning for its argument `{name}`: add `    {name}: ...` "
            "under `Args:` in its docstring (or a base class's)"
        )
    return docs[name]


def table(entries: list[tuple[str, ...]]) -> list[str]:
    if not entries:
        return ["No keys."]
    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    return lines + [f"| `{key}` | {' | '.join(cell(part) for part in rest)} |" for key, *rest in entries]


def wrap(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, width=115, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def render_group(group: str, options: list[Option]) -> str:
    """The block of one group: per class its options, its summary and its keys."""
    by_class: dict[type, list[Option]] = {}
    for option in options:
        by_class.setdefault(target_of(option.node), []).append(option)
    prefix, folder = group.replace("/", "."), CONF_DIR / group
    parts = []
    for cls, members in by_class.items():
        names = ", ".join(f"`{group}={o.name}`" for o in members)
        lines = wrap(f"{names} (`{cls.__module__}.{cls.__qualname__}`): {summary(cls)}")
        if len(members) > 1:
            lines.append("")
            for o in members:
                lines += wrap(f"- `{o.name}`" + (f": {o.comment}" if o.comment else ""), indent="  ")
        nodes = {o.name: o.node for o in members}
        parts.append("\n".join([*lines, "", *table(rows(cls, nodes, prefix, folder))]))
    return "\n\n".join(parts) + "\n"


def render_top() -> str:
    """The block of conf/config.yaml's own keys (the Settings of every run)."""
    from dps_exp.run.settings import Settings

    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"))
    node = {k: v for k, v in raw.items() if k not in ("defaults", "hydra")}
    lines = wrap(f"Top level (`conf/config.yaml`, `{Settings.__module__}.Settings`): {summary(Settings)}")
    return "\n".join([*lines, "", *table(rows(Settings, {"config": node}, "", None))]) + "\n"


@functools.cache  # the code and conf/ do not change within a process
def render() -> dict[str, str]:
    """{block name: its text} for every group."""
    return {TOP: render_top()} | {group: render_group(group, options) for group, options in groups().items()}


def update(text: str, blocks: dict[str, str]) -> str:
    """`text` (the README) with each block replaced by its rendering; every group must have one block."""
    present = [m[1] for m in BLOCK.finditer(text)]
    if missing := [g for g in blocks if g not in present]:
        raise ReferenceGap(
            f"the README has no block for {', '.join(missing)}: add the lines `{START.format(missing[0])}` and "
            f"`{END.format(missing[0])}` where its reference belongs"
        )
    if unknown := sorted({g for g in present if g not in blocks} | {g for g in present if present.count(g) > 1}):
        raise ReferenceGap(f"the README's config-reference blocks {', '.join(unknown)} name no group or repeat one")
    # a blank line before the end marker, so that no Markdown reader takes the marker into a table
    return BLOCK.sub(lambda m: f"{START.format(m[1])}\n{blocks[m[1]]}\n{END.format(m[1])}\n", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if README.md is out of date")
    parser.add_argument("--readme", type=Path, default=README, help="the file to check or rewrite (README.md)")
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text()
        new = update(text, render())
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        stale = [m[1] for m, n in zip(BLOCK.finditer(text), BLOCK.finditer(new), strict=True) if m[0] != n[0]]
        if stale:
            print(f"{args.readme.name}'s config reference is out of date ({', '.join(stale)}): run python "
                  "scripts/config_reference.py", file=sys.stderr)  # fmt: skip
            return 1
        return 0
    if new != text:
        args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
