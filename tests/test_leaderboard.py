"""scripts/leaderboard.py and scripts/solver_table.py on tiny settings: what they write, and that the leaderboard's
scores tell an exact sampler from a poor one."""

from __future__ import annotations

import csv
import json
import runpy

import pytest

from tests.helpers import ROOT


def script(name: str) -> dict:
    return runpy.run_path(str(ROOT / "scripts" / f"{name}.py"))


def test_the_leaderboard_writes_its_tables_and_plots_and_the_exact_sampler_sits_at_its_floor(tmp_path):
    board = script("leaderboard")
    board["main"](
        [
            "--out",
            str(tmp_path),
            "--priors",
            "gmm",
            "--tasks",
            "inpaint",
            "--samplers",
            "dps,ddrm,er",
            "--images",
            "2",
            "--samples",
            "4",
            "--settings",
            "dps=2:4,ddrm=2",
            "data.size=8",
            "denoiser.image_size=8",
        ]
    )  # fmt: skip  (8×8: the d³ algebra takes no time)
    with (tmp_path / "leaderboard.csv").open() as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == board["COLUMNS"]
    assert [(r["sampler"], r["setting"]) for r in table] == [
        ("exact", ""), ("dps", "steps=2"), ("dps", "steps=4"), ("ddrm", "steps=2")
    ]  # fmt: skip
    assert [int(r["nfe"]) for r in table] == [0, 2, 4, 2]
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 4 * 2  # one line per row and image
    summary = {(r["sampler"], r["setting"]): r for r in json.loads((tmp_path / "leaderboard.json").read_text())}
    exact, poor = summary["exact", ""], summary["dps", "steps=2"]
    # exact draws miss the posterior mean only by the finite-sample floor; 2 DPS steps are far from it
    assert 0.7 < exact["mean_rmse"] / exact["mean_rmse_floor"] < 1.3
    assert 0.7 < exact["sliced_w2"] / exact["sliced_w2_floor"] < 1.3
    assert poor["mean_rmse"] > 2 * poor["mean_rmse_floor"] and poor["sliced_w2"] > 1.5 * poor["sliced_w2_floor"]
    text = (tmp_path / "leaderboard.md").read_text()
    assert "#### gmm, inpaint" in text and "| sampler | setting | NFE | seconds | mean RMSE (exact) |" in text
    assert "Not run (the sampler's own check): er: sampler=er solves Fourier phase retrieval only" in text
    for x in ("nfe", "seconds"):
        assert (tmp_path / f"gmm_{x}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "gmm_nfe.png").unlink()
    board["main"](["--out", str(tmp_path), "--replot"])  # the plots again from leaderboard.json, nothing run
    assert (tmp_path / "gmm_nfe.png").is_file()


@pytest.mark.parametrize(
    "name, args, message",
    [
        ("leaderboard", ["--settings", "nope=3"], "'nope=3': SAMPLER=N:N:…"),
        ("leaderboard", ["--tasks", "inpaint,deblur"], "deblur: choose from inpaint, sr, blur, denoise, phase"),
        ("solver_table", ["--samplers", "dps,tv"], "tv: choose from dps, score_sde"),
        ("solver_table", ["--size", "30", "--tasks", "denoise", "--samplers", "admm_tv"], "30"),
    ],
)
def test_the_comparison_scripts_refuse_what_they_cannot_run_in_one_line(tmp_path, capsys, name, args, message):
    with pytest.raises(SystemExit) as stopped:
        script(name)["main"](["--out", str(tmp_path / "out"), *args])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_the_solver_table_prints_a_cell_per_sampler_and_task_and_a_dash_where_the_sampler_refuses(tmp_path, capsys):
    script("solver_table")["main"](["--out", str(tmp_path), "--size", "32", "--images", "1", "--tasks", "inpaint",
                                    "--samplers", "dps,admm_tv,er", "--steps", "2", "--step-sizes", "1",
                                    "--iterations", "3", "--metrics", "psnr"])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("| sampler | NFE | inpaint: PSNR |")
    rows = [line.split(" | ") for line in lines[at + 2 : at + 5]]
    assert [r[0] for r in rows] == ["| dps, 2 steps, ζ = 1", "| admm_tv, 3 iterations", "| er, 3 iterations"]
    assert [r[1] for r in rows] == ["2", "0", "–"] and rows[2][2] == "– |"
    assert all(5 < float(r[2].rstrip(" |")) < 40 for r in rows[:2])
    assert lines[at + 6].startswith("Not run (the sampler's own check): er on inpaint (sampler=er solves Fourier phase")
    assert (tmp_path / "table.md").read_text().splitlines() == lines[at:]
