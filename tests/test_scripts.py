"""The scripts' command lines: `--help` of every argparse script shows its description whole."""

from __future__ import annotations

import ast
import json
import runpy
import sys

import pytest

from tests.helpers import ROOT

ARGPARSE_SCRIPTS = sorted(p for p in (ROOT / "scripts").glob("*.py") if "argparse.ArgumentParser" in p.read_text())


@pytest.mark.parametrize("script", ARGPARSE_SCRIPTS, ids=lambda p: p.name)
def test_help_shows_the_whole_first_paragraph_of_the_docstring(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0
    first = ast.get_docstring(ast.parse(script.read_text())).split("\n\n")[0]
    assert " ".join(first.split()) in " ".join(capsys.readouterr().out.split())  # argparse may rewrap it


def test_a_posterior_testbed_rerun_into_the_same_out_replaces_its_rows(tmp_path):
    testbed = runpy.run_path(str(ROOT / "scripts" / "posterior_testbed.py"))
    smallest = ["--images", "1", "--samples", "1", "--steps", "1", "--step-sizes", "1,2",
                "--size", "4", "denoiser.image_size=4"]  # fmt: skip

    def rows() -> list[dict]:
        testbed["main"](["--out", str(tmp_path), *smallest])
        lines = (tmp_path / "results.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]

    first = rows()
    assert len(first) == 2 and rows() == first
