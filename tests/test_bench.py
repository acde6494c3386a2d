"""scripts/bench.py at toy sizes: the step benchmark and the sweep case run and report what the docs quote."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def bench(*args: str, tmp_path) -> str:
    # one thread per process: on a shared 2-core machine, two threads waiting on each other run a step 10-30× slower
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "scripts/bench.py", "--device", "cpu", "--size", "32", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_step_benchmark_compares_against_the_tutorial_and_keeps_each_row(tmp_path):
    out = tmp_path / "bench.jsonl"
    table = bench("--batch", "2", "--tutorial-batch", "1", "--precision", "bf16", "--channels-last", "on", "off",
                  "--cudnn-benchmark", "on", "--steps", "1", "--warmup", "1", "--repeats", "1", "--out", str(out),
                  tmp_path=tmp_path)  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["loop"], r["batch"], r["channels_last"], r["cudnn_benchmark"]) for r in rows] == [
        ("tutorial", 1, False, False), ("ours", 2, True, True), ("ours", 2, False, True)
    ]  # fmt: skip
    assert all(r["s_per_step"] > 0 and r["device_name"] for r in rows)
    assert "| tutorial | 1 | fp32 | off | off | off |" in table and "| ours | 2 | bf16 | off | on | on |" in table
    assert "Best per image: batch 2, bf16" in table


def test_sweep_benchmark_reports_wall_and_sampling_time(tmp_path):
    table = bench("--sweep", "2", "1", "--steps", "2", tmp_path=tmp_path)
    sequential, vectorized = (line for line in table.splitlines() if line.startswith(("| sequential", "| vectorized")))
    assert sequential.startswith("| sequential | 2 |") and vectorized.startswith("| vectorized | 1 |")
    assert all(float(cell) > 0 for cell in vectorized.strip("|").split("|")[2:])


@pytest.fixture
def scripts(monkeypatch):
    """scripts/bench.py and its cases, imported here (in-process: no start-up of a subprocess)."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import bench
    import bench_cases

    return bench, bench_cases


def test_bad_benchmark_arguments_stop_before_any_timing(scripts, capsys):
    bench, _ = scripts
    for args, message in [(["--steps", "0"], "argument --steps: '0': a whole number, at least 1"),
                          (["--size", "30"], "--size 30: the UNet halves the image 5 times"),
                          (["--batch", "0"], "argument --batch: '0': a whole number, at least 1"),
                          (["--repeats", "0"], "argument --repeats: '0': a whole number, at least 1"),
                          (["--samplers", "dpss"], "argument --samplers: invalid choice: 'dpss'"),
                          (["--continuous", "5"], "--continuous 5: the bundled images are 4"),
                          (["--continuous", "1", "--scale", "0"], "--scale 0.0: a positive factor"),
                          (["--continuous", "1", "--arch", "tiny"], "--arch ffhq or imagenet (or --denoiser natural32)"),
                          (["--samplers", "all", "--sweep", "2", "1"], "separate cases: give one")]:  # fmt: skip
        parser = bench.arguments()
        with pytest.raises(SystemExit) as stop:
            bench.check(parser, parser.parse_args(["--device", "cpu", *args]))
        assert stop.value.code == 2 and message in capsys.readouterr().err, args


def test_sampler_table_times_each_sampler_through_the_engine(scripts):
    """A diffusion sampler (steps), PnP-ADMM (iterations, one network call each) and a network-free one."""
    bench, cases = scripts
    cfg = dict(device="cpu", size=32, steps=2, arch="tiny", threads=1, warmup=0, repeats=1, batch=2, precision="fp32",
               compile=False, channels_last=False, cudnn_benchmark=False, samplers=["dps", "pnp_admm", "admm_tv"])  # fmt: skip
    rows = list(cases.sampler_rows(cfg))
    assert [(r["sampler"], r["nfe"], r["default_nfe"]) for r in rows] == [("dps", 2, 1000), ("pnp_admm", 2, 10),
                                                                          ("admm_tv", 0, 0)]  # fmt: skip
    assert all(r["s_per_sample"] > 0 for r in rows) and rows[0]["s_per_nfe"] == rows[0]["s_per_sample"] / 2
    table = cases.sampler_table(rows, "test CPU")
    assert "| dps | inpaint_random | 2 | fp32 | steps=2 | 2 |" in table
    assert "| admm_tv | super_resolution | 2 | fp32 | its config | 0 |" in table and "– (no network)" in table


def test_the_heterogeneous_sweep_runs_three_ways_with_the_same_rows(scripts):
    bench, cases = scripts
    parser = bench.arguments()
    args = parser.parse_args(["--device", "cpu", "--size", "32", "--continuous", "1", "--denoiser", "natural32",
                              "--chain-steps", "2", "4", "--threads", "1"])  # fmt: skip
    table = cases.continuous_bench(args, "test CPU")
    assert "Sweep sampler.steps=[2, 4] × sampler.eta=[0.5, 1.0], 1 image(s)" in table
    assert "every way recorded the same 4 (image, steps, η) rows" in table
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in table.splitlines() if line.startswith("| ")}
    assert rows["continuous"] == [" 1 ", " continuous "] and rows["packed per steps"] == [" 2 ", " in step "]
    assert rows["sequential"] == [" 4 ", " in step "]


def test_rows_that_differ_between_the_ways_stop_the_case(scripts):
    _, cases = scripts
    row = {"done": {(0, 5, 1.0): ("ok", 5)}, "metrics": {(0, 5, 1.0): {"psnr": 20.0}}}
    short = {"done": {(0, 5, 1.0): ("ok", 4)}, "metrics": {(0, 5, 1.0): {"psnr": 20.5}}}
    assert cases.same_rows({"continuous": {**row, "metrics": {(0, 5, 1.0): {"psnr": 20.5}}}, "sequential": row}) == {
        "continuous": [0.5], "sequential": [0.0]}  # fmt: skip
    with pytest.raises(SystemExit, match="error: continuous recorded"):
        cases.same_rows({"continuous": short, "sequential": row})
