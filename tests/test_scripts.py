"""The scripts' command lines: `--help` of every argparse script shows its description whole; bad arguments stop
them with one line, before they touch earlier results."""

from __future__ import annotations

import ast
import json
import os
import runpy
import subprocess
import sys

import pytest

from tests.helpers import ROOT

PACKAGE_COMMANDS = [
    ROOT / "dps_exp" / "analysis" / f"{name}.py" for name in ("make_table", "sweep_report", "merge_runs")
]
ARGPARSE_SCRIPTS = sorted(
    p for p in [*(ROOT / "scripts").glob("*.py"), *PACKAGE_COMMANDS] if "argparse.ArgumentParser" in p.read_text()
)


@pytest.mark.parametrize("script", ARGPARSE_SCRIPTS, ids=lambda p: p.name)
def test_help_shows_the_whole_first_paragraph_of_the_docstring(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    main = runpy.run_path(str(script))["main"]
    with pytest.raises(SystemExit) as done:
        main()
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


def test_the_posterior_testbed_scores_the_draws_a_run_with_as_many_samples_records(tmp_path):
    from dps_exp.config import resolve
    from dps_exp.run.experiment import Run
    from tests.helpers import compose

    testbed = runpy.run_path(str(ROOT / "scripts" / "posterior_testbed.py"))
    testbed["main"](["--out", str(tmp_path / "bed"), "--images", "2", "--samples", "3", "--steps", "4",
                     "--step-sizes", "0.5,1,2", "--etas", "1,0.5"])  # fmt: skip
    bed = [json.loads(line) for line in (tmp_path / "bed" / "results.jsonl").read_text().splitlines()]
    assert len(bed) == 2 * 3 * 2
    for size in (0.5, 2):
        Run(resolve(compose(["denoiser=gmm", "data=prior_samples", "data.count=2", "physics.mask=0.2",
                             "sampler.steps=4", f"sampler.step_size={size}", "samples=3", "metrics.names=[psnr]",
                             "logger=none", "progress=false"])), tmp_path / str(size)).execute()  # fmt: skip
        run = [
            json.loads(line)["metrics"] for line in (tmp_path / str(size) / "results.jsonl").read_text().splitlines()
        ]
        ours = [r for r in bed if r["step_size"] == size and r["eta"] == 1]
        assert len(run) == len(ours) == 2
        for theirs, mine in zip(run, ours, strict=True):
            assert mine["psnr_mean"] == pytest.approx(theirs["psnr_of_mean"], abs=1e-4)
            for name in ("mean_rmse", "sliced_w2", "coverage"):
                assert mine[name] == pytest.approx(theirs[name], abs=1e-5), name


def test_evaluate_prior_measures_and_draws_what_a_run_does(tmp_path):
    import torch

    from dps_exp.config import resolve
    from dps_exp.run.experiment import Run
    from tests.helpers import compose

    evaluate = runpy.run_path(str(ROOT / "scripts" / "evaluate_prior.py"))
    run = Run(resolve(compose(["denoiser=gaussian", "data=prior_samples", "data.count=2", "data.size=8",
                               *evaluate["task_overrides"]("inpaint20"), "sampler.steps=3", "sampler.step_size=2",
                               "samples=2", "metrics.names=[psnr]", "logger=none", "progress=false"])), tmp_path)  # fmt: skip
    run.execute()
    recorded = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    truth = torch.stack([run.data.load(item) for item in run.data.items()])
    (engine,) = evaluate["engines"](["gaussian"], ["inpaint20"], steps=3, seed=0, crop=8).values()
    physics, _ = evaluate["measure"](engine, truth)  # what the baselines see
    draws = evaluate["dps_samples"](engine, truth, 2.0, samples=2)
    for b, row in enumerate(recorded):
        assert torch.equal(physics.m[b], torch.load(tmp_path / row["operator"], weights_only=True)["mask"])
        assert evaluate["score"](draws[b, :1], truth[b : b + 1])[0] == pytest.approx(row["metrics"]["psnr"], abs=1e-4)
        of_mean = evaluate["score"](draws[b].mean(0, keepdim=True), truth[b : b + 1])[0]
        assert of_mean == pytest.approx(row["metrics"]["psnr_of_mean"], abs=1e-4)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tune", "natural32:1:2"], "write PRIOR=Z1:Z2:...,..."),
        (["--tune", "gmm=1:2"], "no prior 'gmm' in this evaluation"),
        (["--tasks", "inpaint150"], "unknown task 'inpaint150'"),
        (["--step-size", "natural32=2"], "write PRIOR:TASK=VALUE,..."),
        (["--prior", "mine"], "--prior mine: In 'config': Could not find 'denoiser/mine'"),
        (["--tasks", "inpaint20", "--step-size", "gaussian:inpaint20=10"], "no step size for natural32 on inpaint20"),
    ],
)
def test_evaluate_prior_refuses_what_it_cannot_run_before_touching_its_results(tmp_path, args, message):
    (tmp_path / "results.jsonl").write_text("finished\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate_prior.py"), "--out", str(tmp_path), "--steps", "3", *args],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "results.jsonl").read_text() == "finished\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mask", "1.5"], "physics.mask=1.5 is not allowed"),
        (["--size", "16"], "data.size=16 does not fit the prior's images (1, 8, 8)"),
        (["--steps", "3000"], "sampler.steps=3000 is not allowed"),
        (["--step-sizes", "0.5,abc"], "comma-separated numbers"),
        (["denoiser.nope=8"], "Could not override 'denoiser.nope'"),
    ],
)
def test_the_posterior_testbed_checks_its_settings_as_a_run_does(tmp_path, capsys, args, message):
    testbed = runpy.run_path(str(ROOT / "scripts" / "posterior_testbed.py"))
    with pytest.raises(SystemExit) as stopped:
        testbed["main"](["--out", str(tmp_path / "out"), *args])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_posterior_testbed_writes_each_prior_into_its_own_default_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    testbed = runpy.run_path(str(ROOT / "scripts" / "posterior_testbed.py"))
    testbed["main"](["--prior", "gaussian", "--images", "1", "--samples", "1", "--steps", "1", "--step-sizes", "1"])
    assert (tmp_path / "outputs" / "testbed" / "gaussian" / "results.jsonl").is_file()
    assert not (tmp_path / "outputs" / "testbed" / "gmm").exists()


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("prior_docs.py", ["figures", "--demo", "nowhere", "--eval", "nowhere", "--gmm", "a", "--gaussian", "b"],
         "none of the results named is there"),
        ("operator_gallery.py", ["nope"], "no physics option 'nope': the options are denoise, "),
    ],
)  # fmt: skip
def test_a_script_given_nothing_it_can_use_says_so(tmp_path, monkeypatch, capsys, script, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [script, *args])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(ROOT / "scripts" / script), run_name="__main__")
    assert stopped.value.code == 2 and message in capsys.readouterr().err
