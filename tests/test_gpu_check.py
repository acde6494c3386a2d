"""scripts/gpu_check.sh, checked without a GPU and in seconds: the script runs with DEVICE=cpu and its Python
(`PY`) replaced by a recorder, so every section's bash runs (budget, order, report) and says what it would run;
then each recorded step is checked here, in this process: each `scripts/bench.py` call passes bench.py's own
argument checks, the paper task's overrides compose into a valid config, and each inline Python program runs at
toy sizes (the sync and bf16 checks for real, the report lines from the shapes of bench.py's and the run's
files), printing the figure the GPU session is after. What each bench.py mode computes is tested by
tests/test_bench.py, the CLI by the end-to-end tests; `DEVICE=cpu bash scripts/gpu_check.sh` still runs everything
for real, at toy sizes, in a few minutes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch

from dps_exp.run.cli import compose
from dps_exp.run.settings import validate
from tests.helpers import ROOT

RECORDER = """#!/usr/bin/env bash
# one Python call of gpu_check.sh: its arguments (NUL-separated) and, for `-` (an inline program), its stdin; it
# prints one line shaped as bench.py's rows (which the layout section filters), saying what it stands for
f=$(mktemp "$GPU_CHECK_CALLS/$(date +%s%N).XXXXXX")  # in the order of the calls
printf '%s\\0' "$@" > "$f.args"
if [[ ${1:-} == - ]]; then cat > "$f.stdin"; fi
echo "| ours | recorded: $*"
"""
SECTIONS = "sync bf16 layout compile graphs paper sweep continuous samplers"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The dry run's report and its Python calls: [(arguments, inline program or None)]."""
    tmp = tmp_path_factory.mktemp("gpu_check")
    (tmp / "calls").mkdir()
    recorder = tmp / "record"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    env = {**os.environ, "DEVICE": "cpu", "OUT": str(tmp / "out"), "DPS_CACHE": str(tmp / "cache"),
           "PY": str(recorder), "GPU_CHECK_CALLS": str(tmp / "calls")}  # fmt: skip
    for key in ("SECTIONS", "BUDGET", "TORCHINDUCTOR_CACHE_DIR"):
        env.pop(key, None)
    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    calls = []
    for f in sorted((tmp / "calls").glob("*.args")):
        stdin = f.with_suffix(".stdin")
        calls.append((f.read_text().split("\0")[:-1], stdin.read_text() if stdin.exists() else None))
    return (tmp / "out" / "gpu_check.md").read_text(), calls, tmp


def bench_calls(calls, flag: str) -> list[list[str]]:
    return [args[1:] for args, _ in calls if args[:1] == ["scripts/bench.py"] and flag in args]


def program(calls, marker: str) -> tuple[list[str], str]:
    (found,) = [(args, src) for args, src in calls if src is not None and marker in src]
    return found


def run_program(src: str, argv: list[str], capsys, monkeypatch, **env: str) -> str:
    """An inline program of the script, run here as `python - ARGS` would, its printed lines returned."""
    for key, value in {"DEVICE": "cpu", "SIZE": "32", **env}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", argv)
    capsys.readouterr()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the dry run's OMP_NUM_THREADS=1: threads waiting on each other on a shared CPU
    try:
        exec(compile(src, "<gpu_check.sh>", "exec"), {"__name__": "__main__"})
    finally:
        torch.set_num_threads(threads)
        logging.disable(logging.NOTSET)  # the bf16 program quiets the run's warnings for its process
    return capsys.readouterr().out


def test_every_section_runs_within_the_budget_and_says_what_it_runs(recorded):
    report, calls, _ = recorded
    assert "skipped" not in report and "failed" not in report
    assert "gpu_check: done in" in report and f"sections: {SECTIONS}" in report
    for flag in ("--compile", "--sweep", "--continuous", "--samplers"):
        assert bench_calls(calls, flag), f"no bench.py {flag} call"
    for marker in ("set_sync_debug_mode", "bf16 against fp32", "cold compilation", "paper/ffhq_sr4 via the CLI"):
        program(calls, marker)  # exactly one each
    assert [args[:2] for args, _ in calls if args[:2] == ["-m", "dps_exp.run"]] == [["-m", "dps_exp.run"]]


def test_each_bench_call_passes_the_benchmark_s_own_checks(recorded, monkeypatch):
    _, calls, _ = recorded
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import bench

    runs = [args for args, _ in calls if args[:1] == ["scripts/bench.py"]]
    assert len(runs) == 10  # cold compile and graphs; layout (3); compile; graphs; sweep; continuous; samplers
    for args in runs:
        parser = bench.arguments()
        bench.check(parser, parser.parse_args(args[1:]))  # exits 2 with its one line on a bad argument
    layout = [" ".join(a) for a in runs if "--batch 8 " in " ".join(a)]
    for option in ("--precision fp32 bf16 --channels-last off", "--channels-last on", "--cudnn-benchmark on"):
        assert sum(option in a for a in layout) == 1, (option, layout)
    compiled = {a[a.index("--compile") + 1] for a in bench_calls(calls, "--compile")}
    assert compiled == {"on", "graphs"}
    (samplers,) = bench_calls(calls, "--samplers")
    assert samplers[samplers.index("--samplers") + 1] == "all" and "--out" in samplers


def test_the_paper_task_composes_into_a_valid_config(recorded):
    _, calls, _ = recorded
    (args,) = [args for args, _ in calls if args[:2] == ["-m", "dps_exp.run"]]
    overrides = [a for a in args[2:] if not a.startswith("hydra.")]
    spec = compose(overrides)
    validate(spec)
    assert spec["data"]["limit"] == 4 and spec["sampler"]["steps"] == 2


def test_the_sync_program_prints_its_figures(recorded, capsys, monkeypatch):
    _, calls, _ = recorded
    _, sync = program(calls, "set_sync_debug_mode")
    out = run_program(sync, ["-"], capsys, monkeypatch, SYNC_STEPS="2")
    assert "sync check on cpu: passed" in out and "batch invariance on cpu, max |Δ| =" in out


def test_the_bf16_program_prints_its_figures(recorded, capsys, monkeypatch, tmp_path):
    _, calls, _ = recorded
    args, bf16 = program(calls, "bf16 against fp32")
    assert args[1].endswith("out/bf16.json")
    out = run_program(bf16, ["-", str(tmp_path / "bf16.json")], capsys, monkeypatch, DEMO_STEPS="1")
    assert "bf16 against fp32 on cpu, natural32 demo (4 images, 1 steps), mean |Δ| per image: psnr" in out
    assert "bf16 against fp32 on cpu, gmm test bed (8 images, 1 steps)" in out
    assert json.loads((tmp_path / "bf16.json").read_text())["gmm test bed"]["mean_rmse"] == 0.0  # no network


def test_the_report_lines_read_the_files_of_bench_and_the_run(recorded, capsys, monkeypatch, tmp_path):
    """The cold-compilation and paper-task lines, from files shaped as bench.py's `--out` rows and the run's
    summary.json (their keys: bench.py's `run_one` and dps_exp/run/rows.py)."""
    _, calls, _ = recorded
    rows = tmp_path / "cold.jsonl"
    rows.write_text(json.dumps({"compile": True, "batch": 2, "precision": "bf16", "warmup_s": 3.2}) + "\n")
    out = run_program(program(calls, "cold compilation")[1], ["-", str(rows)], capsys, monkeypatch)
    assert "cold compilation (first job; beside the sync and bf16 sections): compile=True, batch 2, bf16: 3.2 s" in out
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"config": {"sampler": {"steps": 2}}, "rows": 4, "wall_time_s": 8.0}))
    out = run_program(program(calls, "paper/ffhq_sr4 via the CLI")[1], ["-", str(summary)], capsys, monkeypatch)
    assert "paper/ffhq_sr4 via the CLI, 4 images, 2 steps, auto settings: 8.0 s in the run" in out
