"""Nothing silently wrong, nothing duplicated: a run directory takes only rows of its own kind (precision,
metrics, …), one process at a time; disk faults and signals end in one line with every finished row kept
whole; a results.jsonl line that is not a result is skipped with a warning; command-line typos are one line."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import signal
import subprocess
import sys

import pytest

from dps_exp.config import resolve
from dps_exp.errors import ConfigError
from dps_exp.run.experiment import Run
from dps_exp.run.recorder import DirectoryInUse, Recorder, RecordError, read_results, write_json
from tests.helpers import cli, compose

TINY = ["experiment=demo", "denoiser=gaussian", "data.size=16", "data.limit=2", "sampler.steps=2", "logger=none",
        "progress=false", "sampler.step_size=10",
        "metrics.names=[psnr,ssim]"]  # without LPIPS, whose backbone the tests lack: no warning that it is left out  # fmt: skip


def spec(*overrides: str) -> dict:
    return resolve(compose([*TINY, *overrides]))


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("first", "second", "said"),
    [
        ((), ("precision=bf16",), "made with precision=fp32 (this run: precision=bf16)"),
        ((), ("compile=true",), "made with compile=false (this run: compile=true)"),
        ((), ("metrics.names=[psnr]",), "made with metrics=[psnr,ssim] (this run: metrics=[psnr])"),
        (("samples=2",), (), "made with samples=2 (this run: samples=1)"),
    ],
)
def test_rows_of_another_precision_or_metric_set_are_refused_by_name(tmp_path, first, second, said):
    Run(spec(*first), tmp_path).execute()
    rows = lines(tmp_path / "results.jsonl")
    assert rows[0]["settings"]["precision"] == "fp32" and rows[0]["settings"]["device"] == "cpu"
    with pytest.raises(ConfigError, match=re.escape(f"already holds results {said}: choose another output directory")):
        Run(spec(*second), tmp_path)
    assert len(lines(tmp_path / "results.jsonl")) == 2  # nothing added, nothing lost


def test_merging_runs_of_different_precision_or_different_results_is_refused(tmp_path):
    from dps_exp.analysis import merge_runs

    Run(spec("data.num_shards=2", "data.shard=0"), tmp_path / "a").execute()
    Run(spec("data.num_shards=2", "data.shard=1", "precision=bf16"), tmp_path / "b").execute()
    with pytest.raises(SystemExit, match='different settings .precision = "fp32" and "bf16".'):
        merge_runs.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")])
    # the same image in two runs whose results differ (another machine's rounding, a file edited by hand)
    Run(spec("data.num_shards=2", "data.shard=0"), tmp_path / "c").execute()
    rows = lines(tmp_path / "c" / "results.jsonl")
    rows[0]["metrics"]["psnr"] += 1.0
    (tmp_path / "c" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SystemExit, match=f"{rows[0]['key']} is in two runs with different results"):
        merge_runs.main([str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "m")])


def test_a_directory_is_held_by_one_process_at_a_time(tmp_path):
    holder = Recorder(tmp_path)
    holder.claim()
    with pytest.raises(DirectoryInUse, match=f"{tmp_path} is in use by another process \\(pid {os.getpid()}\\)"):
        Recorder(tmp_path).claim()
    proc = cli(*TINY, f"hydra.run.dir={tmp_path}", cwd=tmp_path, timeout=120)  # a second process, refused
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path} is in use by another process (pid {os.getpid()}): wait for it to finish, or choose "
        "another output directory"
    )
    assert not (tmp_path / "results.jsonl").exists()
    holder.release()
    Recorder(tmp_path).claim()  # free again once released (or once its process ends)


def test_a_sweep_resumed_twice_at_once_duplicates_nothing(tmp_path):
    """The second sweep's job finds the point directory held and is refused; the first finishes alone."""
    sweep = tmp_path / "sweep"
    args = [*TINY, "data.limit=1", "sampler.eta=0.5,1", f"hydra.sweep.dir={sweep}"]
    assert cli("-m", *args, cwd=tmp_path, timeout=120).returncode == 0
    held = Recorder(sweep / "0")
    held.claim()  # the other resumed sweep, still running point 0
    (sweep / "0" / "results.jsonl").write_text("")  # so that this resume has work to do there
    second = cli("-m", *args, "resume=true", cwd=tmp_path, timeout=120)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-2000:]
    (error,) = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert f"{sweep / '0'} is in use by another process (pid {os.getpid()})" in error
    assert (sweep / "0" / "results.jsonl").read_text() == ""  # refused: nothing written into the held point
    assert len(lines(sweep / "1" / "results.jsonl")) == 1  # the free point: done once, not twice


FAIL_FSYNC = """
import errno, os, runpy, sys
real, calls = os.fsync, []
def fsync(fd):
    calls.append(fd)
    if len(calls) == {n}:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    real(fd)
os.fsync = fsync
sys.argv = ["dps_exp.run", *sys.argv[1:]]
runpy.run_module("dps_exp.run", run_name="__main__")
"""


def test_a_full_disk_ends_in_one_line_with_no_torn_row_and_the_run_resumes(tmp_path):
    out = tmp_path / "out"
    args = [*TINY, "data.batch_size=1", f"hydra.run.dir={out}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true"}
    proc = subprocess.run([sys.executable, "-c", FAIL_FSYNC.format(n=2), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert error == [f"error: cannot write {out / 'results.jsonl'}: [Errno 28] No space left on device. Finished "
                     "results are kept: free some space, then run the same command again (resume=true, or into the "
                     "same directory) to continue"]  # fmt: skip
    assert len(lines(out / "results.jsonl")) == 1  # the first row whole; the second's line undone
    assert not list(out.glob("*.tmp"))
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"
    again = cli(*args, cwd=tmp_path, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [r["index"] for r in lines(out / "results.jsonl")] == [0, 1]


def test_a_json_file_that_cannot_be_written_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(type(tmp_path), "write_text", full)
    with pytest.raises(RecordError, match="summary.json: \\[Errno 28\\] No space left on device"):
        write_json(tmp_path / "summary.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_output_directory_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    proc = cli(*TINY, f"hydra.run.dir={tmp_path / 'a_file' / 'run'}", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot write into hydra.run.dir={tmp_path / 'a_file' / 'run'}: Not a directory: choose another "
        "directory"
    ]


def test_a_line_that_is_not_a_result_is_skipped_with_a_warning(tmp_path, caplog):
    Run(spec("data.limit=1"), tmp_path).execute()
    results = tmp_path / "results.jsonl"
    results.write_text(results.read_text() + '[1, 2]\n42\n{"no": "key"}\nnot json\n')
    with caplog.at_level(logging.WARNING):
        assert len(read_results(results)) == 1
    said = [r.getMessage() for r in caplog.records]
    assert [f"{results} line {n} is not a result (a JSON object with a key): skipped" for n in (2, 3, 4, 5)] == said
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        (summary,) = Run(spec("data.limit=1"), tmp_path).execute()  # the run resumes over it
    assert summary["rows"] == 1 and summary["status"] == "complete"
    assert not [r for r in caplog.records if "is not a result" in r.getMessage()]  # said once, above, not per read


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("sampler.stepz=3", "sampler.stepz is not a key of sampler (did you mean sampler.steps?); valid keys: steps, "
                            "eta, step_size, variance, distance"),
        ("physics=inpaint_rand", "physics=inpaint_rand is not an option of physics (did you mean "
                                 "physics=inpaint_random?); options: denoise, gaussian_blur, inpaint_box, "
                                 "inpaint_random, inpaint_random_paper, motion_blur, phase_retrieval, super_resolution"),
        ("physics.mask=1.5", "physics.mask=1.5 is not allowed: it must satisfy 0 < mask ≤ 1"),
    ],
)  # fmt: skip
def test_typos_and_bad_values_are_one_line_and_leave_no_run_directory(tmp_path, override, said):
    proc = cli(*TINY, override, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {said}"]
    assert not [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]


def test_a_signal_while_the_summary_is_written_leaves_a_complete_run_and_exit_0(tmp_path):
    from tests.helpers import signal_after

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = signal_after(1, signal.SIGTERM, method="write_summary")
    proc = subprocess.run([sys.executable, "-c", code, *TINY, "hydra.run.dir=out"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "out/summary.json").read_text())["status"] == "complete"
    assert "the run is complete (exit 0)" in proc.stdout + proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_after_the_summary_is_written_exits_0_as_the_summary_says(tmp_path, signum):
    """The last second of a complete run (its closing log lines, Hydra's teardown): the exit status agrees with
    the summary's `complete`."""
    code = f"""
import os, runpy, sys
import dps_exp.run.cli as cli
real = cli.objective
def then_signal(*args):
    os.kill(os.getpid(), {int(signum)})
    return real(*args)
cli.objective = then_signal
sys.argv = ["dps_exp.run", *sys.argv[1:]]
runpy.run_module("dps_exp.run", run_name="__main__")
"""
    proc = subprocess.run([sys.executable, "-c", code, *TINY, "hydra.run.dir=out"], cwd=tmp_path,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "out/summary.json").read_text())["status"] == "complete"
    assert "the run is complete (exit 0)" in proc.stdout + proc.stderr


def test_a_sigterm_while_a_batch_is_recorded_keeps_the_whole_batch(tmp_path):
    from tests.helpers import signal_after

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = [*TINY, "data=folder", f"data.root={tmp_path / 'imgs'}", "data.limit=null", "data.batch_size=3",
            "hydra.run.dir=out"]  # fmt: skip
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for k in range(6):
        Image.new("RGB", (16, 16), (40 * k, 10, 10)).save(tmp_path / "imgs" / f"{k}.png")
    proc = subprocess.run([sys.executable, "-c", signal_after(1, signal.SIGTERM), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    assert [r["index"] for r in lines(tmp_path / "out/results.jsonl")] == [0, 1, 2]  # the batch, not its first row
    assert json.loads((tmp_path / "out/summary.json").read_text())["status"] == "interrupted"


@pytest.mark.parametrize(
    "override, named",
    [("data.size=32", "data.size=16 (this run: data.size=32)"),
     ("denoiser.alpha=0.5", "denoiser.alpha="),
     ("metrics.names=[psnr]", "metrics.names=[psnr,ssim] (this run: metrics.names=[psnr])")],
)  # fmt: skip
def test_a_run_into_a_directory_of_other_data_or_metrics_settings_names_the_key(tmp_path, override, named):
    from dps_exp.run.planner import check_directory
    from dps_exp.run.points import expand
    from dps_exp.run.settings import Identity, per_sample_of
    from tests.helpers import compose

    def rows_of(overrides):
        spec = resolve(compose([*TINY, "precision=fp32", "compile=false", "channels_last=false", *overrides]))
        identity = Identity(spec, per_sample_of(spec), "cpu", ["psnr"])
        from dps_exp.run.rows import Rows

        params = Rows(spec, identity, {}, 1, None, {}, None, None).params
        return spec, identity, [{"key": "0-x", "config_id": identity.id, "settings": identity.settings,
                                 "params": params, "index": 0, "source": "a.png"}]  # fmt: skip

    _, _, recorded = rows_of([])
    spec, identity, _ = rows_of([override])
    point = type("P", (), {"values": expand(spec, per_sample_of(spec))[0], "id": "x"})()
    with pytest.raises(ConfigError, match=re.escape(named)):
        check_directory(tmp_path, recorded, identity, point, {0: "a.png"})
