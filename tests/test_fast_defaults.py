"""`auto` speed settings (dps_exp/run/speed.py): each rule on faked devices and a fake timing model; a CPU run
says what it chose, and why, in run.log and summary.json; its identity holds the resolved values; an
out-of-memory error halves the batch and changes no result."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch

from dps_exp.config import build, resolve
from dps_exp.errors import ConfigError
from dps_exp.run import acceleration, speed
from dps_exp.run.acceleration import BatchOutOfMemory
from dps_exp.run.engine import Engine
from dps_exp.run.experiment import Run
from dps_exp.run.settings import Identity, validate
from dps_exp.run.speed import CostModel, DeviceInfo, Workload
from dps_exp.schedule import LinearSchedule
from tests.helpers import cli, compose

GiB = 2**30
H200 = DeviceInfo("cuda", "fake H200", (9, 0), free_bytes=140 * GiB)
V100 = DeviceInfo("cuda", "fake V100", (7, 0), free_bytes=30 * GiB)
CPU = DeviceInfo("cpu")
FFHQ = Workload(samples=1000, steps=1000, shape=(3, 256, 256), parameters=int(93.6e6))
CLOSED_FORM = Workload(samples=16, steps=100, shape=(3, 8, 8), parameters=0)


def test_precision_is_bf16_only_where_measured_within_tolerance_and_faster(monkeypatch):
    monkeypatch.setattr(speed, "BF16_PSNR_CHANGE_DB", {"cuda": None, "cpu": 0.3})  # CUDA: not measured yet
    assert speed.choose_precision("bf16", CPU, FFHQ, 1) == ("bf16", "as set")
    assert speed.choose_precision("auto", H200, CLOSED_FORM, 16)[0] == "fp32"
    value, why = speed.choose_precision("auto", H200, FFHQ, 16)
    assert value == "fp32" and "still to be measured" in why  # the CUDA figure is not in yet: conservative
    assert "has no bf16" in speed.choose_precision("auto", V100, FFHQ, 16)[1]
    monkeypatch.setattr(speed, "BF16_PSNR_CHANGE_DB", {"cuda": 0.02, "cpu": 0.3})  # measured: harmless on CUDA
    assert speed.choose_precision("auto", H200, FFHQ, 16)[0] == "bf16"
    value, why = speed.choose_precision("auto", H200, FFHQ, 4)  # small batches: bf16 is slower there
    assert value == "fp32" and "slower" in why
    value, why = speed.choose_precision("auto", CPU, FFHQ, 4)
    assert value == "fp32" and "over 0.05 dB" in why


def test_batch_is_the_largest_that_fits_the_probed_footprint():
    fixed, per_sample = 3 * GiB, 2 * GiB
    calls = []

    def footprint(b):
        calls.append(b)
        return fixed + b * per_sample

    batch, why = speed.choose_batch("auto", H200, (3, 256, 256), footprint)
    assert calls == [1, 2] and batch == int((140 * GiB * speed.MEMORY_HEADROOM - fixed) // per_sample)
    assert "2.00 GiB per sample" in why
    assert speed.choose_batch("auto", H200, (3, 8, 8), lambda b: b * 1000)[0] == speed.MAX_AUTO_BATCH
    assert speed.choose_batch("auto", DeviceInfo("cuda", free_bytes=GiB), (3, 256, 256), footprint)[0] == 1
    assert speed.choose_batch(6, H200, (3, 256, 256), footprint) == (6, "as set")
    assert [speed.choose_batch("auto", CPU, (3, s, s), None)[0] for s in (512, 256, 128, 64, 32)] == [1, 4, 16, 16, 16]


FAKE = CostModel(compile_s=100.0, floor_s=0.01, eager_per_sample_s={"bf16": 0.01, "fp32": 0.02},
                 compiled_per_sample_s={"bf16": 0.004, "fp32": None}, worth=2.0)  # fmt: skip


def test_compile_when_the_sampling_it_saves_dwarfs_the_compilation():
    big = Workload(samples=64, steps=1000, shape=(3, 256, 256), parameters=int(93.6e6))
    # batch 16, 4 chunks: each step saves 16 × (0.01 − 0.004) = 0.096 s → 384 s ≥ 2 × 100 s
    value, why = speed.choose_compile("auto", H200, big, "bf16", 16, FAKE)
    assert value is True and "save ~384 s of ~100 s compiling" in why
    short = Workload(samples=64, steps=300, shape=(3, 256, 256), parameters=int(93.6e6))
    assert speed.choose_compile("auto", H200, short, "bf16", 16, FAKE)[0] is False  # 115 s < 200 s
    ragged = Workload(samples=72, steps=600, shape=(3, 256, 256), parameters=int(93.6e6))
    value, why = speed.choose_compile("auto", H200, ragged, "bf16", 16, FAKE)  # a remainder of 8: two shapes
    assert value is False and "~200 s compiling" in why
    small_images = Workload(samples=64, steps=1000, shape=(3, 64, 64), parameters=int(93.6e6))
    assert speed.choose_compile("auto", H200, small_images, "bf16", 16, FAKE)[0] is False  # launch-bound
    assert "still to be measured" in speed.choose_compile("auto", H200, big, "fp32", 16, FAKE)[1]
    assert speed.choose_compile("auto", CPU, big, "bf16", 16, FAKE)[0] is False
    assert speed.choose_compile("auto", H200, CLOSED_FORM, "bf16", 16, FAKE)[0] is False
    assert speed.choose_compile("graphs", H200, big, "bf16", 1, FAKE) == ("graphs", "as set")
    with pytest.raises(ConfigError, match="compile=graphs is not allowed here: CUDA graphs need a CUDA device"):
        speed.choose_compile("graphs", CPU, big, "bf16", 1, FAKE)


def test_layout_and_cudnn_follow_the_measurements(monkeypatch):
    monkeypatch.setattr(speed, "CPU_CHANNELS_LAST_SPEEDUP", {"small": 0.94, "large": 1.16})
    monkeypatch.setattr(speed, "CUDNN_BENCHMARK_SPEEDUP", None)
    assert speed.choose_layout("auto", H200, FFHQ, compiled=True)[0] is True
    value, why = speed.choose_layout("auto", H200, FFHQ, compiled=False)
    assert value is False and "GroupNorm" in why
    assert speed.choose_layout(True, H200, FFHQ, compiled=False) == (True, "as set")
    assert speed.choose_layout("auto", CPU, CLOSED_FORM, compiled=False)[0] is False
    value, why = speed.choose_layout("auto", CPU, FFHQ, compiled=False)
    assert value is False and "0.94× small" in why  # slower for one network: contiguous stays
    monkeypatch.setattr(speed, "CPU_CHANNELS_LAST_SPEEDUP", {"a": 1.3, "b": 1.1})
    assert speed.choose_layout("auto", CPU, FFHQ, compiled=False)[0] is True
    assert speed.choose_cudnn(H200) == (False, "auto: its gain is still to be measured")
    monkeypatch.setattr(speed, "CUDNN_BENCHMARK_SPEEDUP", 1.2)
    assert speed.choose_cudnn(H200)[0] is True and speed.choose_cudnn(CPU)[0] is False


def test_an_identity_holds_resolved_values_never_auto():
    spec = resolve(compose(["denoiser=gaussian", "logger=none"]))
    assert spec["precision"] == spec["compile"] == spec["channels_last"] == "auto"
    with pytest.raises(ValueError, match="resolved values, not auto: precision, compile, channels_last"):
        Identity(spec, ["seed"], "cpu", ["psnr"])
    resolved = {"precision": "fp32", "compile": False, "channels_last": False}
    assert Identity(spec, ["seed"], "cpu", ["psnr"], resolved).settings["precision"] == "fp32"


NATURAL = ["experiment=demo", "data.size=32", "data.limit=1", "sampler.steps=2", "logger=none", "progress=false"]


def test_a_resumed_run_whose_auto_resolves_differently_is_refused(tmp_path, monkeypatch):
    Run(resolve(compose(NATURAL)), tmp_path).execute()
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert rows[0]["settings"]["precision"] == "fp32"
    monkeypatch.setattr(speed, "BF16_PSNR_CHANGE_DB", {"cpu": 0.0})  # as if bf16 had been measured harmless
    with pytest.raises(ConfigError, match=r"made with precision=fp32 \(this run: precision=bf16\)"):
        Run(resolve(compose([*NATURAL, "data.limit=null"])), tmp_path)


def test_a_cpu_run_says_what_it_chose_and_why(tmp_path):
    args = ["experiment=demo", "denoiser=gaussian", "data.size=16", "data.limit=2", "sampler.steps=2", "logger=none",
            "progress=false", "compile=false", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [line for line in (tmp_path / "run.log").read_text().splitlines() if "speed on cpu:" in line]
    for said in ("precision=fp32 (auto: the prior has no network", "compile=false (as set)",
                 "data.batch_size=16 (auto on cpu"):  # fmt: skip
        assert said in line
    record = json.loads((tmp_path / "summary.json").read_text())["speed"]
    assert {k: record[k] for k in ("precision", "compile", "channels_last", "batch_size", "oom_backoffs")} == {
        "precision": "fp32", "compile": False, "channels_last": False, "batch_size": 16, "oom_backoffs": []
    }  # fmt: skip
    assert record["reasons"]["compile"] == "as set" and record["reasons"]["precision"].startswith("auto:")


GAUSS = ["denoiser=gaussian", "data.size=16", "data.limit=null", "sampler.steps=4", "logger=none", "progress=false"]


def metrics_of(path):
    return [(r["index"], r["metrics"]) for r in map(json.loads, (path / "results.jsonl").read_text().splitlines())]


def test_out_of_memory_halves_the_batch_and_changes_no_result(tmp_path, monkeypatch, caplog):
    real, sizes = Engine.__call__, []

    def small_memory(self, batch, exact_rows=()):
        sizes.append(len(batch.indices))
        if len(batch.indices) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, batch, exact_rows)

    monkeypatch.setattr(Engine, "__call__", small_memory)
    with caplog.at_level(logging.WARNING):
        (summary,) = Run(resolve(compose([*GAUSS, "data.batch_size=4"])), tmp_path / "four").execute()
    assert sizes == [4, 2, 2] and summary["speed"]["batch_size"] == 2 and summary["speed"]["oom_backoffs"] == [4]
    (said,) = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert said.startswith("out of memory at batch 4 (CUDA out of memory.") and "continuing at batch 2" in said
    monkeypatch.setattr(Engine, "__call__", real)
    Run(resolve(compose([*GAUSS, "data.batch_size=2"])), tmp_path / "two").execute()
    assert metrics_of(tmp_path / "four") == metrics_of(tmp_path / "two")


def test_out_of_memory_at_batch_one_stops_the_run(tmp_path, monkeypatch):
    def no_memory(self, batch, exact_rows=()):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(Engine, "__call__", no_memory)
    with pytest.raises(acceleration.OutOfMemory, match="out of memory on cpu at batch 1 .CUDA out of memory.: use"):
        Run(resolve(compose([*GAUSS, "data.batch_size=2"])), tmp_path).execute()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["speed"]["oom_backoffs"] == [2, 1]


def test_an_auto_batch_halved_by_running_out_of_memory_stays_halved_in_the_process(monkeypatch):
    monkeypatch.setattr(acceleration, "_BATCHES", {})
    device, work = torch.device("cpu"), Workload(8, 4, (3, 16, 16), 0)
    denoiser = build(resolve(compose(GAUSS))["denoiser"], schedule=LinearSchedule())  # the CPU rule probes nothing
    chosen = acceleration.resolve_speed("auto", "auto", "auto", "auto", denoiser, device, work)
    assert chosen.batch_size == 16
    acceleration.halve_batch(chosen, work, device, BatchOutOfMemory(16, "CUDA out of memory"))
    again = acceleration.resolve_speed("auto", "auto", "auto", "auto", denoiser, device, work)
    assert again.batch_size == 8 and "halved after running out of memory at 16" in again.reasons["data.batch_size"]
    other = Workload(8, 4, (3, 16, 16), 0, prior="checkpointed")  # another prior config: its own footprint
    assert acceleration.resolve_speed("auto", "auto", "auto", "auto", denoiser, device, other).batch_size == 16


@pytest.mark.parametrize(
    "override, message",
    [
        ("compile=fast", "compile='fast' is not allowed: it must be one of auto, graphs or true or false"),
        ("precision=fp16", "precision='fp16' is not allowed: it must be one of auto, fp32, bf16"),
        ("data.batch_size=many", "data.batch_size='many' is not allowed: it must be one of auto or an integer"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed: it must satisfy 1 ≤ batch_size"),
    ],
)
def test_bad_speed_values_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        validate(resolve(compose([override])))
