"""scripts/bench.py at toy sizes: the step benchmark and the sweep case run and report what the docs quote."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT


def bench(*args: str, tmp_path) -> str:
    proc = subprocess.run(
        [sys.executable, "scripts/bench.py", "--device", "cpu", "--size", "32", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
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


def test_bad_benchmark_arguments_stop_before_any_timing():
    for args, message in [(["--steps", "0"], "argument --steps: '0': a whole number, at least 1"),
                          (["--size", "30"], "--size 30: the UNet halves the image 5 times"),
                          (["--batch", "0"], "argument --batch: '0': a whole number, at least 1")]:  # fmt: skip
        proc = subprocess.run([sys.executable, "scripts/bench.py", "--device", "cpu", *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
