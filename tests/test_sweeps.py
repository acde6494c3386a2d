"""Sweeps: vectorized = sequential, resume after a kill, launchers, Optuna, the report, W&B sweep files,
shards, and one GPU per job."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image
from torchvision.io import decode_image

from tests.helpers import ROOT, cli, signal_after

# The Gaussian prior's FFT denoiser gives the same floats at any batch size (a conv net's CPU kernels differ in the
# last bits between batch sizes), so packed and sequential runs can be compared to 1e-5.
FAST = ["experiment=demo", "denoiser=gaussian", "data.size=32", "data.limit=1", "sampler.steps=5", "logger=none",
        "progress=false"]  # fmt: skip
GRID = ["sampler.eta=0.5,1", "sampler.step_size=5,20", "physics.mask=0.1,0.3"]


def rows_of(sweep: Path) -> dict[str, list[dict]]:
    out = {}
    for results in sorted(sweep.glob("*/results.jsonl")):
        out[results.parent.name] = [json.loads(line) for line in results.read_text().splitlines()]
    return out


def comparable(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("seconds", "metrics")}


def as_sequential(path: Path, tmp_path: Path) -> str:
    """A file of the packed sweep (`tmp_path/true`) as the sequential one's (`tmp_path/false`) would read: the
    sweep's own directory and `hydra.sweeper.vectorize` value named alike, log times left out."""
    text = path.read_text().replace(str(tmp_path / "true"), str(tmp_path / "false"))
    text = text.replace("vectorize: true", "vectorize: false").replace("vectorize=true", "vectorize=false")
    return re.sub(r"^\[[^]]*\]", "", text, flags=re.M)


# Hydra's override_dirname made unlike its default (the packed points make theirs: dps_exp.run.points.override_dirname)
NAMING = ["hydra.job.config.override_dirname.exclude_keys=[sampler.step_size]",
          "hydra.job.config.override_dirname.kv_sep=:", "hydra.job.config.override_dirname.item_sep=__"]  # fmt: skip


def test_vectorized_equals_sequential(tmp_path):
    for mode in ("true", "false"):
        # a per-sample key before the others: each point's overrides keep the command line's order
        where = [f"hydra.sweeper.vectorize={mode}", f"hydra.sweep.dir={tmp_path / mode}", *NAMING]
        proc = cli("-m", GRID[0], *FAST, *GRID[1:], *where, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert ("vectorized sweep: 8 points in 1 jobs" in proc.stdout + proc.stderr) == (mode == "true")
    assert sorted(p.name for p in (tmp_path / "true").iterdir() if p.is_dir()) == [*map(str, range(8)), "packed-0"]
    packed, sequential = rows_of(tmp_path / "true"), rows_of(tmp_path / "false")
    assert sorted(packed) == sorted(sequential) == [str(n) for n in range(8)]
    for job in sequential:
        (a,), (b,) = packed[job], sequential[job]
        assert comparable(a) == comparable(b)
        for name in a["metrics"]:
            assert abs(a["metrics"][name] - b["metrics"][name]) <= 1e-5
        pa, pb = (decode_image(str(d / job / r["image"])) for d, r in ((tmp_path / "true", a), (tmp_path / "false", b)))
        assert (pa.int() - pb.int()).abs().max().item() <= 1
        for name in (".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml", "run.log"):
            a, b = tmp_path / "true" / job / name, tmp_path / "false" / job / name
            assert as_sequential(a, tmp_path) == as_sequential(b, tmp_path), name
        sa, sb = (json.loads((d / job / "summary.json").read_text()) for d in (tmp_path / "true", tmp_path / "false"))
        assert sa["point"] == sb["point"] and sa["config"] == sb["config"] and sa["overrides"] == sb["overrides"]


class RecordingLauncher:
    """A launcher that runs nothing: it records the batches it is handed (first job number, job overrides) and
    returns `value(job)` for each job (an exception: the job failed with it)."""

    def __init__(self, value=lambda job: 0.0) -> None:
        self.batches: list[tuple[int, list[list[str]]]] = []
        self.value = value

    def launch(self, batch, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        self.batches.append((initial_job_idx, [list(job) for job in batch]))
        values = [self.value(job) for job in batch]
        return [JobReturn(status=JobStatus.FAILED if isinstance(v, Exception) else JobStatus.COMPLETED, _return_value=v)
                for v in values]  # fmt: skip


def sweep_in_process(overrides: list[str], sweep_dir: Path, launcher: RecordingLauncher) -> None:
    """`python -m dps_exp.run -m OVERRIDES` with the configured sweeper, in this process, on this launcher."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext, RunMode

    from dps_exp.run.cli import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        cfg = loader.load_configuration("config", [*overrides, f"hydra.sweep.dir={sweep_dir}"], RunMode.MULTIRUN)
        sweeper = Plugins.instance().instantiate_sweeper(
            hydra_context=HydraContext(config_loader=loader, callbacks=None), task_function=None, config=cfg
        )
        sweeper.launcher = launcher
        sweeper.sweep(arguments=list(cfg.hydra.overrides.task))


def swept(overrides: list[str], sweep_dir: Path) -> tuple[list, dict]:
    """What the configured sweeper hands its launcher for `-m OVERRIDES`, and the multirun.yaml it writes (its own
    node, the one choice and the Hydra overrides that differ between sweepers left out)."""
    launcher = RecordingLauncher()
    sweep_in_process(overrides, sweep_dir, launcher)
    written = OmegaConf.to_container(OmegaConf.load(sweep_dir / "multirun.yaml"))
    del written["hydra"]["sweeper"], written["hydra"]["runtime"]["choices"]["hydra/sweeper"]
    written["hydra"]["overrides"]["hydra"] = [o for o in written["hydra"]["overrides"]["hydra"] if "sweeper" not in o]
    return launcher.batches, written


def test_an_unpacked_sweep_is_hydras_basic_sweep(tmp_path):
    """`hydra.sweeper.vectorize=false` hands the launcher the jobs of Hydra's basic sweeper, in its order, with its
    numbering, and writes its multirun.yaml."""
    # a key given twice keeps its first place, with its last values
    grid = ["experiment=demo", "seed=0,1", "++physics.noise.sigma=0.1", "denoiser=gaussian,gmm",
            "sampler.eta=0.5,1", "seed=2,3"]  # fmt: skip
    basic = swept(["hydra/sweeper=basic", *grid], tmp_path)
    ours = swept(["hydra.sweeper.vectorize=false", *grid], tmp_path)
    assert ours == basic
    ((first, jobs),) = basic[0]
    assert first == 0 and len(jobs) == 8
    assert jobs[1] == ["experiment=demo", "seed=2", "++physics.noise.sigma=0.1", "denoiser=gaussian", "sampler.eta=1"]


@pytest.mark.parametrize(
    "overrides",
    [["++seed=3", "data.size=32", "sampler.eta=0.5", "data.size=16", "+tag='a=b, c'", "~channels_last", "progress=false"],
     ["experiment=demo", "+denoiser@extra=gaussian", "seed=1"]],
)  # fmt: skip
def test_a_points_override_dirname_is_hydras(overrides):
    """A packed point's `hydra.job.override_dirname` (dps_exp.run.points) is made as Hydra makes a job's: keys left out
    however written (`++seed`), a key given twice kept twice, `=` inside a value replaced too. (The packed sweep's
    `hydra.yaml` files are compared with Hydra's own for real jobs in test_vectorized_equals_sequential.)"""
    from hydra import compose

    from dps_exp.run.points import override_dirname

    naming = {"exclude_keys": ["seed", "progress"], "item_sep": "__", "kv_sep": ":"}
    hydra_args = [f"hydra.job.config.override_dirname.{k}={json.dumps(v)}" for k, v in naming.items()]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        hydra = compose("config", [*overrides, *hydra_args], return_hydra_config=True).hydra
    assert override_dirname(overrides, **naming) == hydra.job.override_dirname
    assert "seed" not in hydra.job.override_dirname


def total_rows(root: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in root.rglob("results.jsonl"))


# Runs the sweep and SIGKILLs its own process right after the third result row reaches the disk: a kill at a
# fixed point mid-sweep (mid-batch too, as a packed batch writes one row per point), whatever the machine's speed.
KILL_AFTER_THREE_ROWS = signal_after(3, signal.SIGKILL)


def test_a_killed_sweep_resumes_to_the_same_rows_without_duplicates(tmp_path):
    args = [*FAST, "data.limit=null", "data.batch_size=1", "sampler.steps=40", "sampler.eta=0.5,1", "logger=wandb"]
    env = {**os.environ, "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    killed = tmp_path / "killed"
    killed.mkdir()
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", KILL_AFTER_THREE_ROWS, "-m", *args], cwd=killed, env=env,
                                stdout=log, stderr=log, start_new_session=True)  # fmt: skip
        code = proc.wait(timeout=300)
    with contextlib.suppress(ProcessLookupError):  # W&B's service process too, as a real kill of the job would
        os.killpg(proc.pid, signal.SIGKILL)
    assert code == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    assert total_rows(killed) == 3
    resumed = cli("-m", *args, "resume=true", cwd=killed, env={"WANDB_MODE": "offline"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (sweep,) = {p.parent.parent for p in killed.rglob("results.jsonl")}  # one sweep dir, reused

    clean = tmp_path / "clean"
    clean.mkdir()
    assert cli("-m", *args, cwd=clean, env={"WANDB_MODE": "offline"}).returncode == 0
    (reference,) = {p.parent.parent for p in clean.rglob("results.jsonl")}
    got, want = rows_of(sweep), rows_of(reference)
    assert sorted(got) == sorted(want) == ["0", "1"]
    for job in want:
        assert [r["key"] for r in got[job]] == [r["key"] for r in want[job]]  # all rows, none twice
        for a, b in zip(got[job], want[job], strict=True):
            assert comparable(a) == comparable(b) and a["metrics"] == pytest.approx(b["metrics"], abs=1e-5)
        runs = list((sweep / job / "wandb").glob("offline-run-*"))
        ids = {r.name.rsplit("-", 1)[1] for r in runs}
        assert len(ids) == 1, runs  # the resumed W&B run continues the same run id


def test_submitit_local_launcher_runs_two_jobs(tmp_path):
    proc = cli(
        "-m",
        *FAST,
        "sampler.distance=auto,plain",
        "hydra/launcher=local",
        f"hydra.sweep.dir={tmp_path / 's'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(rows_of(tmp_path / "s")) == ["0", "1"]
    assert len(list((tmp_path / "s").rglob("*_submitted.pkl"))) == 2  # both went through submitit


def test_optuna_study_survives_a_failed_trial(tmp_path):
    proc = cli(
        "hparams_search=step_size", *FAST, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path / 'study'}",
        "hydra.sweeper.params={sampler.step_size: 'choice(5.0, -1.0, 20.0)'}",  # -1 fails: TPE seed 0 draws it first
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Failed experiment" in proc.stdout + proc.stderr
    best = yaml.safe_load((tmp_path / "study" / "optimization_results.yaml").read_text())
    assert best["best_params"] in ({"sampler.step_size": 5.0}, {"sampler.step_size": 20.0})


def test_a_stored_study_resumes_and_one_in_memory_says_it_cannot(tmp_path):
    study = [*FAST, "hparams_search=step_size", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path / 'a'}"]
    proc = cli(*study, "resume=true", cwd=tmp_path)
    assert proc.returncode == 1 and "hydra.sweeper.storage=sqlite:///" in proc.stderr
    assert "under outputs/" not in proc.stderr  # the single run's resume does not speak for a study
    storage = f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}"
    for resume in ("false", "true"):
        proc = cli(*study, storage, f"resume={resume}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "continues from sqlite" in proc.stderr + proc.stdout
    import optuna

    assert len(optuna.load_study(study_name="dps_step_size", storage=storage.split("=", 1)[1]).trials) == 4
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_dir()) == ["0", "1", "2", "3"]  # trial numbers


STUDY = ["hparams_search=step_size", *FAST, "hydra.sweeper.params={sampler.step_size: 'choice(5.0, -1.0, 20.0)'}"]


def test_a_study_runs_its_trials_in_batches_of_n_jobs_numbered_as_its_trials(tmp_path):
    """Trial N is job N; a failed job, or one returning NaN, is a failed trial and the study goes on; the best
    lands in optimization_results.yaml."""
    import optuna

    values = {"5.0": ValueError("diverged"), "-1.0": float("nan"), "20.0": 14.5}
    launcher = RecordingLauncher(lambda job: values[job[0].split("=")[1]])
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = [*STUDY, "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=2", f"hydra.sweeper.storage={storage}"]
    sweep_in_process(study, tmp_path / "s", launcher)
    assert [(first, len(jobs)) for first, jobs in launcher.batches] == [(0, 2), (2, 2), (4, 1)]
    fixed = [*STUDY[:1], *FAST[:-1], "progress=False"]  # as Hydra's sweepers write a value back
    assert all(job[1:] == fixed for _, jobs in launcher.batches for job in jobs)
    trials = optuna.load_study(study_name="dps_step_size", storage=storage).trials
    drawn = [job[0] for _, jobs in launcher.batches for job in jobs]
    assert [f"sampler.step_size={t.params['sampler.step_size']}" for t in trials] == drawn
    assert [t.state.name for t in trials] == ["COMPLETE" if d.endswith("=20.0") else "FAIL" for d in drawn]
    best = yaml.safe_load((tmp_path / "s" / "optimization_results.yaml").read_text())
    assert best == {"name": "optuna", "best_params": {"sampler.step_size": 20.0}, "best_value": 14.5}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("hydra.sweeper.max_failure_rate=0", "1 of 1 trials of a batch failed, more than hydra.sweeper.max_failure_rate=0"),
        ("hydra.sweeper.direction=up", "hydra.sweeper.direction=up is not allowed: it must be maximize or minimize"),
        ("hydra.sweeper.n_jobs=0", "hydra.sweeper.n_jobs=0 is not allowed: it must be an integer ≥ 1"),
        ("+hydra.sweeper.params={sampler.steps: 'range(9, 1)'}", "sampler.steps=range(9, 1): the range holds no value"),
    ],
)  # fmt: skip
def test_a_study_stops_with_one_line(tmp_path, capsys, setting, message):
    launcher = RecordingLauncher(lambda job: ValueError("diverged"))
    with pytest.raises(SystemExit):
        sweep_in_process([*STUDY, setting], tmp_path / "s", launcher)
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {message}")


def test_a_multirun_refuses_an_interval_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        sweep_in_process(["sampler.eta=interval(0, 1)"], tmp_path / "s", RecordingLauncher())
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: sampler.eta=interval(0, 1): a multirun (-m) runs listed values (a=1,2, choice(…), range(…)), "
        "not an interval; an Optuna study (hparams_search=…) searches intervals"
    )


def test_a_stored_study_refuses_a_key_searched_another_way_before_its_first_trial(tmp_path, capsys):
    """Optuna would refuse it at the first trial, with a traceback, leaving that trial open in the storage."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="dps_step_size", storage=storage)
    study.add_trial(optuna.trial.create_trial(params={"sampler.step_size": 5.0}, value=1.0,
                                              distributions={"sampler.step_size": optuna.distributions.CategoricalDistribution([5.0, 20.0])}))  # fmt: skip
    launcher = RecordingLauncher()
    with pytest.raises(SystemExit) as stop:
        sweep_in_process(
            ["hparams_search=step_size", *FAST, f"hydra.sweeper.storage={storage}"], tmp_path / "s", launcher
        )
    assert stop.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith("error: sampler.step_size is searched as FloatDistribution(")
    )
    assert len(optuna.load_study(study_name="dps_step_size", storage=storage).trials) == 1  # none left open
    assert launcher.batches == []


@pytest.mark.parametrize(
    ("override", "kind", "drawn"),
    [
        ("a=interval(0, 1)", {"FloatDistribution": dict(low=0.0, high=1.0, log=False, step=None)}, 0.5),
        ("a=tag(log, interval(0.05, 5.0))", {"FloatDistribution": dict(low=0.05, high=5.0, log=True, step=None)}, 1.0),
        ("a=range(1, 10, 3)", {"IntDistribution": dict(low=1, high=7, log=False, step=3)}, 4),  # Hydra's: 1, 4, 7
        ("a=range(0.5, 2.0, 0.5)", {"FloatDistribution": dict(low=0.5, high=1.5, log=False, step=0.5)}, 1.5),
        ("a=choice(5.0, -1.0, 20.0)", {"CategoricalDistribution": dict(choices=(5.0, -1.0, 20.0))}, -1.0),
        ("+a='x y',z", {"CategoricalDistribution": dict(choices=("'x y'", "z"))}, "'x y'"),  # as it reads back
    ],
)
def test_an_optuna_search_space_reads_hydras_sweep_syntax(override, kind, drawn):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.dps_exp_sweeper.search_space import SearchSpace

    space = SearchSpace.parse(OverridesParser.create().parse_overrides([override, "b=1", "b=2", "c=range(1,3)", "c=3"]))
    ((key, dist),) = space.distributions.items()
    ((name, fields),) = kind.items()
    assert type(dist).__name__ == name and {k: getattr(dist, k) for k in fields} == fields
    assert space.overrides({key: drawn}) == [f"{key}={drawn}", "b=2", "c=3"]  # a value given last fixes a key


def test_a_study_whose_every_trial_failed_says_so_in_one_line(tmp_path):
    proc = cli(
        "hparams_search=step_size", *FAST, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path / 'study'}",
        "hydra.sweeper.params={sampler.step_size: 'choice(-1.0, -2.0)'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"every trial of the study failed; each one's reason is in its run.log under {tmp_path / 'study'}" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert "is not allowed: it must satisfy 0 ≤ step_size" in (tmp_path / "study" / "0" / "run.log").read_text()


def test_a_bad_value_every_trial_shares_stops_the_study_before_its_first_trial(tmp_path):
    proc = cli(
        "hparams_search=step_size", *FAST, "physics.mask=7", f"hydra.sweep.dir={tmp_path / 'study'}", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: physics.mask=7 is not allowed: it must satisfy 0 < mask ≤ 1"
    assert not (tmp_path / "study" / "0").exists()


def test_sweep_report_builds_table_and_plots(tmp_path):
    sweep = tmp_path / "s"
    assert cli("-m", *FAST, *GRID, f"hydra.sweep.dir={sweep}", cwd=tmp_path).returncode == 0
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "sweep_report.py"), str(sweep)],
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    header, *lines = (sweep / "report" / "table.csv").read_text().splitlines()
    assert header.startswith("run,physics.mask,sampler.eta,sampler.step_size,psnr_mean")
    assert len(lines) == 8
    with Image.open(sweep / "report" / "psnr.png") as im:
        assert im.size[0] > 600
    assert "| run |" in (sweep / "report" / "table.md").read_text()
    assert "no lpips plot: no run scored lpips" in proc.stderr  # FAST scores no LPIPS: said, not silent
    for option in ("--x", "--panel"):
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "sweep_report.py"), str(sweep), option, "foo.bar"],
                              capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 2 and f"{option} foo.bar: no run records it; its runs record " in proc.stderr


def agent_command(sweep_file: Path, params: dict) -> list[str]:
    """The command a `wandb agent` runs for these parameters (its own macro substitution, replayed)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    spec = yaml.safe_load(sweep_file.read_text())
    macros = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    macros |= {"env": ["/usr/bin/env"], "interpreter": [sys.executable]}
    command = []
    for token in spec["command"]:
        command += macros[token[2:-1]] if token.startswith("${") and token.endswith("}") else [token]
    return command


@pytest.mark.parametrize("name", ["wandb_step_size.yaml", "wandb_mask_grid.yaml"])
def test_wandb_sweep_commands_compose_and_run_offline(tmp_path, name):
    spec = yaml.safe_load((ROOT / "sweeps" / name).read_text())
    params = {k: v["values"][0] if "values" in v else v["min"] for k, v in spec["parameters"].items()}
    command = agent_command(ROOT / "sweeps" / name, params)
    fast = ["experiment=demo", "data.size=32", "data.limit=1", "sampler.steps=3", "progress=false"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([*command, *fast], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (summary,) = tmp_path.rglob("summary.json")
    config = json.loads(summary.read_text())["config"]
    for key, value in params.items():
        group, field = key.split(".")
        assert config[group][field] == value
    assert list(summary.parent.glob("wandb/offline-run-*"))


def test_shards_merge_into_the_unsharded_run(tmp_path):
    base = [*FAST, "data.limit=null", "logger=none"]
    assert cli(*base, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path).returncode == 0
    for shard in (0, 1):
        args = [*base, f"data.shard={shard}", "data.num_shards=2", f"hydra.run.dir={tmp_path / str(shard)}"]
        assert cli(*args, cwd=tmp_path).returncode == 0
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "merge_runs.py"), str(tmp_path / "0"),
                           str(tmp_path / "1"), "--out", str(tmp_path / "merged")], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    merged = [json.loads(x) for x in (tmp_path / "merged" / "results.jsonl").read_text().splitlines()]
    whole = [json.loads(x) for x in (tmp_path / "whole" / "results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in merged] == [0, 1, 2, 3]
    assert [r["metrics"] for r in merged] == [r["metrics"] for r in whole]


def merge_cli(*args) -> None:
    """dps-merge ARGS in-process (its errors are SystemExit)."""
    from dps_exp.analysis import merge_runs

    merge_runs.main([str(a) for a in args])


def fake_shard(path: Path, shard: int | None, num_shards: int = 2, hydra_only: bool = False, point=None) -> Path:
    """A run directory with one row of image `shard` and its config recorded in summary.json (or, for a run
    stopped before its summary, only in .hydra/config.yaml); `shard=None`: a config without shard keys."""
    path.mkdir(parents=True)
    index = shard or 0
    row = {"key": f"{index:05d}-a", "config_id": "c", "index": index, "status": "ok", "metrics": {"psnr": 20.0}}
    (path / "results.jsonl").write_text(json.dumps(row | ({"point": point} if point else {})) + "\n")
    data = {} if shard is None else {"shard": shard, "num_shards": num_shards}
    config = {"data": {"size": 8, **data}, "metrics": {"names": ["psnr"]}}
    if hydra_only:
        (path / ".hydra").mkdir()
        (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    else:
        (path / "summary.json").write_text(json.dumps({"config": config}))
    return path


def test_merge_refuses_what_is_not_a_run_and_an_out_that_is_one(tmp_path):
    shard = fake_shard(tmp_path / "sweep" / "0", 0)
    fake_shard(tmp_path / "sweep" / "1", 1)
    (tmp_path / "empty").mkdir()
    cases = {
        (tmp_path / "nowhere", shard): "error: no such run directory: ",
        (tmp_path / "sweep",): f"error: {tmp_path / 'sweep'} is a sweep, not a run: pass its point directories ("
        f"{tmp_path / 'sweep' / '0'} {tmp_path / 'sweep' / '1'})",
        (tmp_path / "empty",): "holds no results.jsonl: not a run directory",
    }
    for runs, message in cases.items():
        with pytest.raises(SystemExit) as stop:
            merge_cli(*runs, "--out", tmp_path / "merged")
        assert message in str(stop.value) and not (tmp_path / "merged").exists()
    before = (shard / "results.jsonl").read_text()
    with pytest.raises(SystemExit) as stop:
        merge_cli(shard, tmp_path / "sweep" / "1", "--out", shard)
    assert "is one of the runs: merging would overwrite its results.jsonl" in str(stop.value)
    assert (shard / "results.jsonl").read_text() == before


def test_merge_refuses_other_sweep_points_and_a_run_given_twice_and_takes_an_empty_shard(tmp_path):
    eta0 = fake_shard(tmp_path / "a", 0, point={"seed": 0, "sampler.eta": 0})
    eta1 = fake_shard(tmp_path / "b", 1, point={"seed": 0, "sampler.eta": 1})
    for runs, message in [
        ((eta0, eta1), "different sweep points (sampler.eta = 0 and 1)"),
        ((eta0, eta0), "given twice"),
    ]:
        with pytest.raises(SystemExit) as stop:
            merge_cli(*runs, "--out", tmp_path / "merged")
        assert message in str(stop.value) and not (tmp_path / "merged").exists()
    empty = fake_shard(tmp_path / "c", 1, point={"seed": 0, "sampler.eta": 0})
    (empty / "results.jsonl").unlink()  # more shards than images: this one ran nothing
    merge_cli(eta0, empty, "--out", tmp_path / "merged")
    assert len((tmp_path / "merged" / "results.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize(
    ("shards", "warning"),
    [
        ([(0, 2), (1, 2)], None),
        ([(0, 2), (1, 2, "hydra_only")], None),
        ([(None,), (None,)], None),
        ([(0, 2)], "warning: shard 1 of data.num_shards=2 not among the runs: the merged set is partial"),
        ([(0, 4), (2, 4)], "warning: shard 1, 3 of data.num_shards=4 not among the runs"),
        ([(0, 2), (1, 4)], "warning: the runs split the data differently (data.num_shards = 2, 4)"),
    ],
)
def test_merge_warns_when_the_shards_are_not_one_whole_set(tmp_path, capsys, shards, warning):
    runs = [fake_shard(tmp_path / str(k), *spec[:2], hydra_only=len(spec) > 2) for k, spec in enumerate(shards)]
    merge_cli(*runs, "--out", tmp_path / "merged")
    err = capsys.readouterr().err
    assert (warning in err) if warning else err == ""
    assert len((tmp_path / "merged" / "results.jsonl").read_text().splitlines()) == len({s[0] for s in shards})


def test_each_parallel_job_claims_its_own_gpu(tmp_path, monkeypatch):
    from dps_exp.run import devices

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    first, claim0 = devices.claim_gpu(tmp_path)
    second, claim1 = devices.claim_gpu(tmp_path)
    assert {first, second} == {0, 1}
    claim0.close()
    third, claim2 = devices.claim_gpu(tmp_path, poll_s=0.01)
    assert third == first
    claim1.close()
    claim2.close()


def test_each_packed_point_logs_its_own_config(tmp_path):
    """W&B (any logger) gets a point's own config, with one η, not the packed job's list."""
    from unittest import mock

    from dps_exp.config import resolve
    from dps_exp.run.experiment import Run
    from dps_exp.run.loggers import Logger
    from tests.helpers import compose

    seen = []
    with mock.patch.object(Logger, "start", lambda self, config, out_dir, name: seen.append(config)):
        Run(resolve(compose([*FAST, "sampler.eta=[0.5,1]"])), tmp_path).execute()
    assert [c["sampler"]["eta"] for c in seen] == [0.5, 1]


def test_a_packed_points_config_file_keeps_the_configs_interpolations(tmp_path):
    """Hydra saves a job's config unresolved (`mode: ${oc.env:WANDB_MODE,offline}`); a packed point's too."""
    from dps_exp.run.loggers import Logger
    from dps_exp.run.points import Point
    from dps_exp.run.recorder import Recorder
    from tests.helpers import compose

    task = compose([*FAST, "logger=wandb", "sampler.eta=[0.5,1]", "sweep_jobs=[3,4]"])
    task = OmegaConf.masked_copy(task, [k for k in task if k != "hydra"])
    point = Point({"sampler.eta": 1, "seed": 0}, Recorder(tmp_path), Logger(), "p", ["sampler.eta=1"], {})
    point.write_hydra_files(task)
    saved = OmegaConf.load(tmp_path / ".hydra" / "config.yaml")
    assert saved.sampler.eta == 1 and saved.sweep_jobs is None and saved.seed == 0
    assert OmegaConf.to_container(saved.logger)["mode"] == "${oc.env:WANDB_MODE,offline}"
    assert OmegaConf.load(tmp_path / ".hydra" / "overrides.yaml") == ["sampler.eta=1"]


def test_points_listed_in_one_run_are_one_wandb_group_and_resuming_keeps_their_names(tmp_path):
    from unittest import mock

    from dps_exp.config import resolve
    from dps_exp.run.experiment import Run
    from dps_exp.run.loggers import Logger
    from dps_exp.run.points import sweep_group
    from tests.helpers import compose

    started = []
    with mock.patch.object(Logger, "start", lambda self, config, out_dir, name: started.append((name, self.group))):
        for overrides in (["sampler.eta=[0.5,1]"], ["sampler.eta=[0.5,1]", "resume=true"]):
            Run(resolve(compose([*FAST, *overrides])), tmp_path, overrides=overrides).execute()
    assert (
        started[:2]
        == started[2:]
        == [("sampler.eta=0.5", sweep_group(tmp_path)), ("sampler.eta=1", sweep_group(tmp_path))]
    )


def test_sweep_params_from_a_config_expand_as_the_basic_sweepers(tmp_path):
    """`hydra.sweeper.params` (a sweep written in a config) comes first, then the command line's, as Hydra's
    basic sweeper orders them; the points are packed all the same."""
    sweep = tmp_path / "sweep"
    proc = cli("-m", *FAST, 'hydra.sweeper.params={sampler.eta:"0.5,1"}', "sampler.step_size=5,20",
               f"hydra.sweep.dir={sweep}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sweep_jobs=[0,1,2,3]" in proc.stdout + proc.stderr  # one packed job
    points = {name: (rows[0]["point"]["sampler.eta"], rows[0]["point"]["sampler.step_size"]) for name, rows in rows_of(sweep).items()}  # fmt: skip
    assert points == {"0": (0.5, 5), "1": (0.5, 20), "2": (1, 5), "3": (1, 20)}


def test_resume_into_a_named_sweep_dir_continues_that_one(tmp_path):
    """`resume=true hydra.sweep.dir=A` continues A, even when a newer sweep with the same overrides exists."""
    args = ["-m", *FAST, "sampler.eta=0.5,1"]
    assert cli(*args, "hydra.sweep.dir=multirun/day/a", "data.limit=1", cwd=tmp_path).returncode == 0
    assert cli(*args, "hydra.sweep.dir=multirun/day/b", "data.limit=2", cwd=tmp_path).returncode == 0
    proc = cli(*args, "hydra.sweep.dir=multirun/day/a", "data.limit=2", "resume=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "continuing the sweep in multirun/day/a, as named" in proc.stdout + proc.stderr
    assert total_rows(tmp_path / "multirun/day/a") == 4 and total_rows(tmp_path / "multirun/day/b") == 4


@pytest.mark.parametrize(
    "listed",
    [["sampler.eta=[0.5,1]"], ["experiment=paper/ffhq_phase_retrieval", "denoiser=gaussian", "data=sample",
                               "sampler.variance=eta", "metrics=default", "data.size=16"]],
    ids=["by hand", "by an experiment"],
)  # fmt: skip
def test_a_job_that_already_lists_points_is_not_packed_with_others(tmp_path, listed):
    """Per-sample values listed in the job's own config (an experiment's best-of-4 seeds, a hand-written list)
    make that job's points: sweeping another per-sample key runs each job as it is (it was zipped with them)."""
    sweep = tmp_path / "sweep"
    proc = cli("-m", *FAST, *listed, "sampler.step_size=5,20", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for job, step_size in (("0", 5), ("1", 20)):
        points = [json.loads((d / "results.jsonl").read_text().splitlines()[0])["point"] for d in sorted((sweep / job).glob("point-*"))]  # fmt: skip
        assert len(points) >= 2 and {p["sampler.step_size"] for p in points} == {step_size}
    assert not list(sweep.glob("packed-*"))


def test_nested_per_sample_lists_are_refused():
    from dps_exp.errors import ConfigError
    from dps_exp.run.settings import validate
    from tests.helpers import compose

    with pytest.raises(ConfigError, match="sampler.eta=.*must hold one value per point, not lists"):
        validate(compose(["sampler.eta=[[0,1],[0,1]]"]))


def test_a_signal_while_summaries_are_written_waits_for_them(tmp_path):
    """SIGTERM arriving as a packed job writes its points' summaries: every point still gets one, then the
    process stops as SIGTERM would."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = signal_after(1, signal.SIGTERM, method="write_summary")
    proc = subprocess.run([sys.executable, "-c", code, "-m", *FAST, *GRID[:2], "hydra.sweep.dir=sweep"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("[0-9]*/summary.json"))]
    assert [s["status"] for s in summaries] == ["complete"] * 4


def test_sweep_report_keeps_every_varying_key_apart():
    """A key that only some runs have (a sweep over operators) varies; runs are named by their path in the sweep;
    keys other than x and panel (steps here) split the plot's lines as the series does."""

    from dps_exp.analysis.report import table

    def run(path, **params):
        return {"dir": f"/s/{path}", "params": params, "rows": [], "metrics": {}, "summary": {}}

    runs = [run("0/point-0", **{"physics.mask": 0.1, "sampler.eta": 0, "sampler.steps": 3, "sampler.step_size": 1}),
            run("0/point-1", **{"physics.mask": 0.1, "sampler.eta": 1, "sampler.steps": 5, "sampler.step_size": 1}),
            run("1/point-0", **{"physics.factor": 4, "sampler.eta": 0, "sampler.steps": 3, "sampler.step_size": 1})]  # fmt: skip
    columns, rows = table(runs)
    assert columns[:4] == ["run", "physics.mask", "sampler.eta", "sampler.steps"] and "physics.factor" in columns
    assert [r[0] for r in rows] == ["0/point-0", "0/point-1", "1/point-0"]
    from dps_exp.analysis import sweep_report as report

    keys = report.series_keys(runs, "sampler.step_size", "sampler.eta", "physics.mask")
    assert keys == ["sampler.eta", "sampler.steps", "physics.factor"]


def test_a_missing_plugin_names_the_extra_to_install(monkeypatch):
    import importlib.util

    from dps_exp.run.cli import missing_plugin

    assert missing_plugin(["-m", "hydra/launcher=gpus", "sampler.eta=0,1"]) is None  # installed here (dev extra)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    assert missing_plugin(["hparams_search=step_size"]) == (
        "hparams_search=step_size needs the 'optuna' extra: pip install -e '.[optuna]' (or dps-exp[optuna])"
    )


def test_a_shared_part_of_the_experiments_is_not_run_as_a_task():
    from dps_exp.run.cli import shared_part

    assert shared_part(["experiment=paper/ffhq_sr4"]) is None
    assert shared_part(["-m", "experiment=paper/ffhq_sr4,paper/_ffhq"]) == (
        "experiment=paper/_ffhq is a part other experiments share, not a task "
        "(e.g. paper/ffhq_deblur_gauss, paper/ffhq_deblur_gauss_zeta)"
    )


def test_a_bad_value_in_one_point_stops_the_sweep_before_any_job(tmp_path):
    """The message is the one a sequential sweep gives, not the packed list's (`sampler.eta[1]=1.5`)."""
    proc = cli("-m", *FAST, "sampler.eta=0,1.5", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: sampler.eta=1.5 is not allowed: it must satisfy 0 ≤ eta ≤ 1"
    assert not list((tmp_path / "sweep").rglob("results.jsonl"))
