"""The README's config reference is what scripts/config_reference.py writes from the code: the test fails when a
signature, a default in conf/ or an argument's meaning changes and the README does not."""

from __future__ import annotations

import runpy
from typing import Annotated, Literal

import pytest

from dps_exp.config import PER_SAMPLE, Range
from tests.helpers import ROOT

REFERENCE = runpy.run_path(str(ROOT / "scripts" / "config_reference.py"))
README = ROOT / "README.md"


def test_the_readme_reference_is_the_code():
    text = README.read_text()
    blocks = REFERENCE["render"]()
    stale = [name for name, block in blocks.items() if f"{REFERENCE['START'].format(name)}\n{block}\n" not in text]
    assert not stale, (
        f"README.md's config reference is out of date ({', '.join(stale)}): run scripts/config_reference.py"
    )
    assert REFERENCE["update"](text, blocks) == text


def test_every_group_and_the_top_level_have_a_block():
    blocks = REFERENCE["render"]()
    assert {"top", "schedule", "physics", "physics/noise", "denoiser", "sampler", "data", "metrics", "logger"} <= set(
        blocks
    )
    assert "train" in blocks  # conf/train/ configures scripts/train_prior.py
    assert not any(name.startswith(("hydra", "experiment", "hparams_search", "sweeper")) for name in blocks)


def test_the_rows_say_default_bounds_per_sample_and_meaning():
    physics = REFERENCE["render"]()["physics"]
    assert (
        "| `physics.mask` | 0.1 (`inpaint_random`), 0.08 (`inpaint_random_paper`) | a number, 0 < mask ≤ 1; per sample "
        "| fraction of pixels kept." in physics
    )
    top = REFERENCE["render"]()["top"]
    assert "| `device` | auto | one of auto, cpu, cuda |" in top


def test_check_fails_on_a_stale_readme_and_the_rewrite_mends_it(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text().replace("| `sampler.steps` | 1000 |", "| `sampler.steps` | 999 |"))
    assert REFERENCE["main"](["--check", "--readme", str(readme)]) == 1
    assert "out of date (sampler)" in capsys.readouterr().err
    assert REFERENCE["main"](["--readme", str(readme)]) == 0
    assert readme.read_text() == README.read_text()
    assert REFERENCE["main"](["--check", "--readme", str(readme)]) == 0


def test_a_missing_block_is_named(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text().replace("config-reference:start logger", "config-reference:start logr"))
    assert REFERENCE["main"](["--check", "--readme", str(readme)]) == 2
    assert "error: the README has no block for logger: add the lines" in capsys.readouterr().err


class Base:
    """A base.

    Args:
        shared: said once, here
        size: the base's meaning
    """

    def __init__(self, shared: int = 0, size: int = 1):
        pass


class Child(Base):
    """A child.

    Its second paragraph stays out of the summary.

    Args:
        size: the child's own meaning,
            continued on an indented line
        kind: one or the other

    Returns:
        nothing a parser should read
    """

    def __init__(
        self,
        size: Annotated[int, Range(1, 8)] = 2,
        kind: Literal["a", "b"] = "a",
        shared: Annotated[float, Range(0, 1), PER_SAMPLE] = 0.5,
    ):
        super().__init__(0, size)


class Undocumented(Base):
    """No Args of its own."""

    def __init__(self, shared: int = 0, extra: int = 3):
        pass


def test_argument_docs_read_the_class_and_its_bases():
    docs = REFERENCE["argument_docs"](Child)
    assert docs == {
        "shared": "said once, here",
        "size": "the child's own meaning, continued on an indented line",
        "kind": "one or the other",
    }
    assert REFERENCE["summary"](Child) == "A child."


def test_rows_of_a_class():
    rows = REFERENCE["rows"](Child, {"one": {"size": 4}, "two": {}}, "grp", None)
    assert rows == [
        ("grp.size", "4 (`one`), 2 (`two`)", "an integer, 1 ≤ size ≤ 8", "the child's own meaning, continued on an indented line"),
        ("grp.kind", "a", "one of a, b", "one or the other"),
        ("grp.shared", "0.5", "a number, 0 ≤ shared ≤ 1; per sample", "said once, here"),
    ]  # fmt: skip


def test_an_argument_without_a_meaning_stops_the_reference():
    with pytest.raises(REFERENCE["ReferenceGap"], match=r"Undocumented has no meaning for its argument `extra`"):
        REFERENCE["rows"](Undocumented, {"x": {}}, "grp", None)
