"""scripts/gpu_check.sh's CPU dry run: every section runs at toy sizes (32×32, a tiny UNet for the compiled ones,
a 2-point sweep; torch.compile disabled, its CPU path being tested in test_compile_cache.py and
test_speed_options.py) and writes its figure, so the GPU session only has to run the script.

About 20 processes, each importing torch: a minute or two on a quiet 2-core machine."""

from __future__ import annotations

import json
import os
import subprocess

from tests.helpers import ROOT


def test_the_gpu_script_runs_every_section_on_the_cpu(tmp_path):
    env = {**os.environ, "DEVICE": "cpu", "OUT": str(tmp_path / "out"), "DPS_CACHE": str(tmp_path / "cache")}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)  # fmt: skip
    log = (tmp_path / "out" / "log.txt").read_text() if (tmp_path / "out" / "log.txt").exists() else ""
    assert proc.returncode == 0, proc.stdout[-3000:] + log[-3000:]
    report = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "skipped" not in report and "failed" not in report
    for figure in [
        "sync check on cpu: passed",
        "batch invariance on cpu, max |Δ| =",
        "bf16 against fp32 on cpu, natural32 demo (4 images, 2 steps), mean |Δ| per image: psnr",
        "bf16 against fp32 on cpu, gmm test bed (8 images, 2 steps), mean |Δ| per image: psnr",
        "cold compilation (first job; beside the sync and bf16 sections): compile=True, batch 2, bf16",
        "cold compilation (first job; beside the sync and bf16 sections): compile=graphs, batch 1, bf16",
        "| ours | 8 | fp32 | off | off | off |",  # layout: contiguous, fp32 and bf16
        "| ours | 8 | bf16 | off | off | off |",
        "| ours | 8 | bf16 | off | on | off |",  # channels_last
        "| ours | 8 | bf16 | off | off | on |",  # cudnn.benchmark
        "| ours | 2 | bf16 | on | on | off |",  # compiled, from the cache
        "| ours | 1 | bf16 | graphs | on | off |",  # CUDA graphs' mode (plain inductor on a CPU)
        "speed on cpu: precision=fp32 (auto:",  # the paper task's auto settings
        "paper/ffhq_sr4 via the CLI, 4 images, 2 steps, auto settings:",
        "| sequential | 2 |",
        "| vectorized | 1 |",
        "gpu_check: done in",
    ]:
        assert figure in report, f"{figure!r} is not in the report:\n{report}"
    bf16 = json.loads((tmp_path / "out" / "bf16.json").read_text())
    assert bf16["gmm test bed"]["mean_rmse"] == 0.0  # no network: bf16 changes nothing there
    rows = [json.loads(line) for line in (tmp_path / "out" / "bench.jsonl").read_text().splitlines()]
    assert {r["compile"] for r in rows} == {False, True, "graphs"}
