"""The Run's reliability: divergence, interruption and resume, unreadable images, foreign results."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from dps_exp.config import resolve
from dps_exp.denoisers import StationaryGaussian
from dps_exp.errors import ConfigError
from dps_exp.physics import Noise, RandomInpainting
from dps_exp.run.experiment import Run
from dps_exp.samplers.dps import DPS
from tests.helpers import cli, compose


def spec(*overrides):
    return resolve(
        compose(
            [
                "denoiser=gaussian",
                "data.size=16",
                "data.limit=null",
                "sampler.steps=10",
                "logger=none",
                "progress=false",
                *overrides,
            ]
        )
    )


def test_a_diverging_sample_is_stopped_and_recorded_while_others_finish(schedule):
    class Breaks(StationaryGaussian):
        def forward(self, x_t, t):
            pred = super().forward(x_t, t)
            pred.x0[1:2] = torch.where(t[1] < 500, torch.nan, pred.x0[1:2])
            return pred

    x = torch.rand(2, 3, 8, 8) * 2 - 1
    physics = RandomInpainting(mask=0.5, noise=Noise(sigma=0.05)).draw(x.shape, [torch.Generator()] * 2, "cpu")
    y = physics.measure(x, [torch.Generator().manual_seed(i) for i in range(2)])
    draws = [torch.randn(2, 3, 8, 8) for _ in range(11)]
    it = iter(draws)
    result = DPS(steps=10).sample(y, physics, Breaks(schedule), schedule, noise=lambda: next(it))
    ts = DPS(steps=10).timesteps(schedule).tolist()
    first_bad = next(i for i, t in enumerate(ts) if t < 500)
    assert result.diverged_at.tolist() == [-1, first_bad]
    assert torch.isfinite(result.x).all()
    it = iter(d[:1] for d in draws)
    alone = DPS(steps=10).sample(
        y[:1], physics_slice(physics, 0), StationaryGaussian(schedule), schedule, lambda: next(it)
    )
    assert torch.allclose(result.x[0], alone.x[0], atol=1e-5)


def physics_slice(physics, b):
    p = RandomInpainting(mask=physics.mask, noise=physics.noise)
    p.m = physics.m[b : b + 1]
    return p


def test_diverged_rows_say_so(tmp_path, monkeypatch):
    run = Run(spec("data.limit=2"), tmp_path)
    original = run.prior.forward

    def breaks_second(x_t, t):
        pred = original(x_t, t)
        if x_t.shape[0] == 2:
            pred.x0[1] = torch.nan
        return pred

    monkeypatch.setattr(run.prior, "forward", breaks_second)
    (summary,) = run.execute()
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["ok", "diverged"]
    assert rows[1]["diverged_step"] == 0 and rows[1]["metrics"]["psnr"] is None
    assert summary["diverged"] == 1 and summary["metrics"]["psnr"]["n"] == 1


def test_interrupted_run_keeps_finished_rows_and_resumes_without_duplicates(tmp_path, monkeypatch):
    s = spec("data.batch_size=1")
    run = Run(s, tmp_path)
    calls = {"n": 0}
    real = Run.run_batch

    def flaky(self, chunk):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, chunk)

    monkeypatch.setattr(Run, "run_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["rows"] == 2
    monkeypatch.setattr(Run, "run_batch", real)
    Run(s, tmp_path).execute()
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    fresh = tmp_path / "fresh"
    Run(s, fresh).execute()
    again = [json.loads(line) for line in (fresh / "results.jsonl").read_text().splitlines()]
    assert [r["metrics"] for r in rows] == [r["metrics"] for r in again]


def test_resume_true_continues_the_newest_run_with_the_same_overrides(tmp_path):
    """A single run with `resume=true`, from the command line: it goes on in the earlier run's directory (a
    longer data.limit adds rows there), while other overrides start a new directory."""
    from tests.helpers import cli

    args = ["experiment=demo", "denoiser=gaussian", "data.size=16", "sampler.steps=3", "logger=none", "progress=false"]
    assert cli(*args, "data.limit=1", "hydra.run.dir=outputs/day/first", cwd=tmp_path).returncode == 0
    # the same overrides as recorded there (hydra.run.dir is not a task override), however resume is spelt
    proc = cli(*args, "data.limit=1", "++resume=TRUE", cwd=tmp_path)
    assert proc.returncode == 0 and "resume=true: continuing outputs/day/first" in proc.stderr
    rows = (tmp_path / "outputs/day/first/results.jsonl").read_text().splitlines()
    assert len(rows) == 1  # nothing recomputed, nothing duplicated
    other = cli(*args, "data.limit=2", "resume=true", cwd=tmp_path)
    assert other.returncode == 0 and "no earlier run with these overrides" in other.stderr


@pytest.mark.parametrize(
    "overrides, wanted",
    [(["resume=true"], True), (["+resume=True"], True), (["++resume=TRUE"], True), (["resume=false"], False),
     (["x=1"], False), (["resume=yes"], False), (["bad=[unclosed"], False)],
)  # fmt: skip
def test_resume_flag_spellings(overrides, wanted):
    from dps_exp.run.resume import resume_requested

    assert resume_requested(overrides) is wanted


def test_a_torn_last_line_is_dropped(tmp_path):
    s = spec("data.limit=1")
    Run(s, tmp_path).execute()
    with (tmp_path / "results.jsonl").open("a") as f:
        f.write('{"key": "00001-')  # killed mid-write
    Run(spec("data.limit=2"), tmp_path).execute()
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1]


def test_results_of_another_config_are_not_mixed_in(tmp_path):
    Run(spec("data.limit=1"), tmp_path).execute()
    with pytest.raises(ConfigError, match=r"already holds results made with denoiser.alpha=3.0 \(this run: denoiser"):
        Run(spec("data.limit=1", "denoiser.alpha=2.0"), tmp_path).execute()
    with pytest.raises(ConfigError, match="already holds results of another configuration"):  # no key to name
        Run(spec("data.limit=1", "sampler=ddrm"), tmp_path).execute()


def test_folder_data_converts_grey_and_rgba_and_reports_unreadable_files(tmp_path, caplog):
    root = tmp_path / "imgs"
    root.mkdir()
    Image.new("L", (40, 30), 128).save(root / "a_grey.png")
    Image.new("RGBA", (30, 40), (255, 0, 0, 100)).save(root / "b_rgba.png")
    Image.new("RGB", (20, 20), (0, 0, 255)).save(root / "c.jpg")
    (root / "d_broken.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    (summary,) = Run(spec("data=folder", f"data.root={root}"), out).execute()
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["source"].rsplit("/", 1)[1] for r in rows) == [
        "a_grey.png",
        "b_rgba.png",
        "c.jpg",
        "d_broken.png",
    ]
    broken = next(r for r in rows if r["source"].endswith("d_broken.png"))
    assert broken["status"] == "unreadable" and "d_broken.png" in broken["error"]
    assert "d_broken.png" in caplog.text
    assert summary["ok"] == 3 and summary["unreadable"] == 1


@pytest.mark.parametrize(
    "make, message", [(lambda p: None, "is not a folder"), (lambda p: p.mkdir(), "no PNG or JPEG")]
)
def test_bad_data_folders_are_named(tmp_path, make, message):
    from dps_exp.errors import DataError

    root = tmp_path / "nothing"
    make(root)
    with pytest.raises(DataError, match=message):
        Run(spec("data=folder", f"data.root={root}"), tmp_path / "out")


def test_a_directory_holds_one_point_and_1_is_1_0(tmp_path):
    """A rerun with another per-sample value is refused (it would mix two points into one summary); the same
    value written as an integer is the same point, so nothing is recomputed."""
    Run(spec("data.limit=1", "sampler.step_size=1"), tmp_path).execute()
    Run(spec("data.limit=1", "sampler.step_size=1.0"), tmp_path).execute()
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 1
    with pytest.raises(ConfigError, match=r"another sweep point \(sampler.step_size=1 there, 4 here\)"):
        Run(spec("data.limit=1", "sampler.step_size=4"), tmp_path)


def test_resuming_over_another_image_list_is_refused(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for name in ("a.png", "c.png"):
        Image.new("RGB", (16, 16), (200, 10, 10)).save(root / name)
    out = tmp_path / "out"
    Run(spec("data=folder", f"data.root={root}", "data.limit=1"), out).execute()
    Run(spec("data=folder", f"data.root={root}"), out).execute()  # more of the same list: fine
    Image.new("RGB", (16, 16), (0, 0, 0)).save(root / "b.png")  # sorts between: c.png is now image 2
    with pytest.raises(ConfigError, match="another image list \\(image 1 was c.png there, is b.png now\\)"):
        Run(spec("data=folder", f"data.root={root}"), out)
    # fewer images (or another shard) than the directory holds: its summary would count images not in the list
    with pytest.raises(ConfigError, match="results for image 1 \\(c.png\\), which is not among this run's images"):
        Run(spec("data=folder", f"data.root={root}", "data.limit=1"), out)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["denoiser=natural32", "data.size=30"], "data.size=30 is not allowed: .* a multiple of 4"),
        (["physics=inpaint_box", "physics.placement=center"], "box \\+ 2·margin must be ≤ 16"),
        (["denoiser=gmm", "data.size=16"], "the images are \\(3, 16, 16\\) .* GaussianMixture is defined on"),
    ],
)
def test_images_that_do_not_fit_stop_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        Run(spec("data.limit=1", *overrides), tmp_path)
    assert list(tmp_path.iterdir()) == []  # no results, no "interrupted" summary


def test_each_operator_file_holds_its_own_sample(tmp_path):
    Run(spec("data.limit=null", "data.batch_size=4"), tmp_path).execute()
    for path in (tmp_path / "operators").glob("*.pt"):
        (mask,) = torch.load(path, weights_only=True).values()
        assert mask.untyped_storage().nbytes() == mask.numel() * mask.element_size()  # not the batch's storage


def test_a_crash_is_recorded_as_failed_not_interrupted(tmp_path, monkeypatch):
    def crash(self, chunk):
        raise RuntimeError("boom")

    monkeypatch.setattr(Run, "run_batch", crash)
    with pytest.raises(RuntimeError, match="boom"):
        Run(spec("data.limit=1"), tmp_path).execute()
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"


def test_an_empty_shard_finishes_with_nothing_to_do(tmp_path):
    from tests.helpers import cli

    proc = cli("experiment=demo", "denoiser=gaussian", "data.size=16", "data.limit=2", "data.num_shards=4",
               "data.shard=2", "logger=none", "progress=false", "hydra.run.dir=out", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "holds no image: nothing to run" in proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["status"] == "complete" and summary["rows"] == 0


def test_sigterm_keeps_finished_rows_and_exits_143_without_a_traceback(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from tests.helpers import signal_after

    args = ["experiment=demo", "denoiser=gaussian", "data.size=16", "data.limit=null", "data.batch_size=1",
            "sampler.steps=3", "logger=none", "progress=false", "hydra.run.dir=out"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", signal_after(2, signal.SIGTERM), *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "interrupted: finished images are recorded" in output
    assert json.loads((tmp_path / "out/summary.json").read_text())["status"] == "interrupted"
    assert len((tmp_path / "out/results.jsonl").read_text().splitlines()) == 2


def test_an_unreadable_image_is_tried_again_once_mended(tmp_path):
    root, out = tmp_path / "imgs", tmp_path / "out"
    root.mkdir()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(root / "a.png")
    (root / "b.png").write_bytes(b"not a png")
    (first,) = Run(spec("data=folder", f"data.root={root}"), out).execute()
    assert (first["ok"], first["unreadable"]) == (1, 1)
    Image.new("RGB", (16, 16), (0, 0, 200)).save(root / "b.png")
    (second,) = Run(spec("data=folder", f"data.root={root}"), out).execute()
    assert (second["rows"], second["ok"], second["unreadable"]) == (2, 2, 0)
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_image = {i: [r["status"] for r in lines if r["index"] == i] for i in (0, 1)}
    assert by_image == {0: ["ok"], 1: ["unreadable", "ok"]}  # image a not recomputed; b's later row replaces


def test_a_sweep_resumes_only_a_sweep_of_the_same_config_params(tmp_path):
    """`hydra.sweeper.params` given on the command line is part of what a sweep is, for resume=true."""
    from omegaconf import OmegaConf

    from dps_exp.run.resume import previous_dir

    params = 'hydra.sweeper.params={sampler.eta:"0,1"}'
    (tmp_path / "day/a").mkdir(parents=True)
    hydra = {"overrides": {"task": ["sampler.step_size=1,4"], "hydra": [params, "hydra.mode=MULTIRUN"]}}
    OmegaConf.save({"hydra": hydra}, tmp_path / "day/a/multirun.yaml")
    assert previous_dir(tmp_path, ["sampler.step_size=1,4", params], sweep=True) == tmp_path / "day/a"
    other = 'hydra.sweeper.params={sampler.eta:"0.5,1"}'
    assert previous_dir(tmp_path, ["sampler.step_size=1,4", other], sweep=True) is None


@pytest.mark.parametrize("status, exit_code", [("complete", 0), ("interrupted", 1), ("failed", 1)])
def test_the_wandb_summary_holds_the_runs_status_and_counts(status, exit_code):
    """A run stopped or with diverged images must not look like a clean one in W&B."""
    from dps_exp.run.loggers import WandbLogger

    class FakeRun:
        summary: dict = {}

        def log(self, data):
            pass

        def finish(self, exit_code=None):
            self.exit_code = exit_code

    logger = WandbLogger()
    logger.run = run = FakeRun()
    run.summary = {}
    summary = {"status": status, "rows": 3, "ok": 2, "diverged": 1, "unreadable": 0, "wall_time_s": 1.5,
               "metrics": {"psnr": {"mean": 20.0, "std": 1.0, "n": 2}}}  # fmt: skip
    logger.finish(summary, [])
    assert run.summary == {"psnr/mean": 20.0, "psnr/std": 1.0, "psnr/n": 2, "psnr": 20.0, "status": status,
                           "rows": 3, "ok": 2, "diverged": 1, "unreadable": 0, "wall_time_s": 1.5}  # fmt: skip
    assert run.exit_code == exit_code


def test_diverged_results_are_said_on_the_console(tmp_path):
    proc = cli("experiment=demo", "denoiser=gaussian", "data.size=32", "data.limit=2", "sampler.steps=3",
               "sampler.step_size=1e300", "logger=none", "progress=false", f"hydra.run.dir={tmp_path}",
               cwd=tmp_path)  # fmt: skip
    assert "2 of 2 results diverged (NaN or inf), left out of the metrics" in proc.stderr + proc.stdout


def test_wandb_mode_dryrun_from_the_environment_runs_offline(monkeypatch):
    from dps_exp.config import build
    from dps_exp.run.settings import validate

    monkeypatch.setenv("WANDB_MODE", "dryrun")  # W&B's older name for offline, still accepted by wandb
    spec = resolve(compose(["logger=wandb"]))
    validate(spec)
    assert build(spec["logger"]).mode == "offline"


class FakeWandbRun:
    """What `wandb.init` returns, recording the calls the logger makes."""

    def __init__(self, **kwargs):
        self.kwargs, self.calls, self.summary = kwargs, [], {}

    def define_metric(self, name, **options):
        self.calls.append(("define_metric", name, options))

    def log(self, data):
        self.calls.append(("log", data))

    def finish(self, exit_code=None):
        self.calls.append(("finish", exit_code))


def test_wandb_charts_each_metric_by_image_index_and_tables_the_panels(tmp_path, monkeypatch):
    """Runs compare in W&B: metrics against the image index (not W&B's step, which a resumed session restarts),
    and the results table shows each reconstruction's panel; a resumed session continues the same W&B run."""
    import numpy as np
    import wandb

    runs = []
    monkeypatch.setattr(wandb, "init", lambda **kwargs: runs.append(FakeWandbRun(**kwargs)) or runs[-1])
    for limit in (1, 2):  # the second session resumes the first
        Run(spec(f"data.limit={limit}", "metrics.names=[psnr,ssim]", "logger=wandb"), tmp_path).execute()
    first, second = runs
    assert first.kwargs["id"] == second.kwargs["id"] == (tmp_path / "wandb_run_id").read_text()
    assert first.kwargs["resume"] == second.kwargs["resume"] == "allow"
    calls = second.calls
    assert calls[0] == ("define_metric", "index", {"hidden": True})
    assert sorted(calls[1:3]) == [("define_metric", m, {"step_metric": "index"}) for m in ("psnr", "ssim")]
    (row,) = [c[1] for c in calls if c[0] == "log" and "index" in c[1]]  # image 0 was done by the first session
    assert row["index"] == 1 and isinstance(row["panel"], wandb.Image) and set(row) >= {"psnr", "ssim"}
    (table,) = [c[1]["results"] for c in calls if c[0] == "log" and "results" in c[1]]
    assert table.columns == ["key", "index", "source", "status", "panel", "psnr", "ssim"]
    recorded = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    for data, rec in zip(table.data, recorded, strict=True):
        on_disk = np.asarray(Image.open(tmp_path / rec["image"]).convert("RGB"))
        assert data[:4] == [rec["key"], rec["index"], rec["source"], "ok"] and data[5] == rec["metrics"]["psnr"]
        assert np.array_equal(np.asarray(data[4].image.convert("RGB")), on_disk)
    assert calls[-1] == ("finish", 0)
    from dps_exp.run.loggers import WandbLogger

    (tmp_path / recorded[0]["image"]).unlink()  # a panel gone from disk leaves its cell empty, not the run failed
    logger = WandbLogger()
    logger.out_dir = tmp_path
    cells = [row[4] for row in logger.results_table(recorded).data]
    assert cells[0] is None and isinstance(cells[1], wandb.Image)
