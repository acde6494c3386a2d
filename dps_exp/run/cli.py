"""`python -m dps_exp.run [overrides]`: compose the config, build the Run, execute it.

Returns the mean of `optimized_metric` (PSNR by default) so that Hydra sweepers (Optuna) can optimise it. In a multirun, a job that fails raises:
the launcher records it as failed and the sweep (or study) goes on.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
import math
import shutil
import signal
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dps_exp.config import resolve, target_of
from dps_exp.errors import UserError
from dps_exp.run.preflight import hydra_problem, unwritable_output
from dps_exp.run.resume import previous_dir, resume_requested, without_resume
from dps_exp.run.signals import exit_as_signalled, note_signals, stop_on_signal

CONF_MODULE = "dps_exp.conf"
CONF_DIR = Path(str(importlib.resources.files(CONF_MODULE)))
"""The config tree: conf/ at the repository root, installed as the package dps_exp.conf (editable or wheel)."""
log = logging.getLogger("dps_exp")


def compose(overrides: Sequence[str] = ()) -> dict:
    """The resolved config these overrides give, composed from conf/ as the command line would (for scripts)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from dps_exp.config import resolve

    with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
        return resolve(hydra_compose(config_name="config", overrides=list(overrides)))


def compose_task(overrides: Sequence[str]) -> dict:
    """The task config these overrides give, unresolved (for checking the command line)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
        return OmegaConf.to_container(hydra_compose(config_name="config", overrides=list(overrides)), resolve=False)


def to_log_files(message: str) -> None:
    """Also into the job's run.log (the console already has it on stderr), so the log says why it stopped."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def remove_if_unused(out_dir: Path) -> None:
    """A run refused before any work leaves no directory behind: remove it when it holds only what Hydra wrote
    (`.hydra/`, the log)."""
    if out_dir.is_dir() and {p.name for p in out_dir.iterdir()} <= {".hydra", "run.log"}:
        shutil.rmtree(out_dir, ignore_errors=True)
        here = Path.cwd().resolve()
        for parent in out_dir.resolve().parents:  # Hydra's outputs/<date>/ too, when nothing else is in them
            if parent == here or here not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:  # not empty
                break


def objective(run, summaries: list[dict], multirun: bool) -> float:
    """The job's return value, for sweepers (Optuna): the mean over its points of `optimized_metric`'s mean."""
    metric = run.settings.optimized_metric
    means = [s["metrics"][metric]["mean"] for s in summaries if "mean" in s["metrics"].get(metric, {})]
    value = statistics.fmean(means) if means else math.nan
    if math.isnan(value) and metric in run.metrics.per_image and any(s["rows"] for s in summaries):
        message = f"no image finished with a finite {metric} (every one diverged or was unreadable): see results.jsonl"
        if multirun:
            raise RuntimeError(message)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    return value


@hydra.main(version_base="1.3", config_path=f"pkg://{CONF_MODULE}", config_name="config")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    out_dir = Path(hc.runtime.output_dir)
    signal.signal(signal.SIGTERM, stop_on_signal)
    logging.raiseExceptions = False  # a log file on a full disk must not print a traceback for every line
    # torch and the rest load here, not at the top: a Ctrl-C while they load ends like any other (exit 130); the
    # config is validated first, so a bad value is said before the run's heavier imports (metrics, images) load
    from dps_exp.run.points import PointLogs
    from dps_exp.run.recorder import DirectoryInUse
    from dps_exp.run.settings import validate

    with PointLogs() as point_logs:
        try:
            validate(resolve(cfg))
            from dps_exp.run.experiment import Run

            run = Run.from_config(
                cfg,
                out_dir,
                hydra=hc,
                sweep_dir=Path(hc.sweep.dir) if multirun else None,
                overrides=list(hc.overrides.task),
            )
            point_logs.open(run.points)
            summaries = run.execute()
        except KeyboardInterrupt as err:  # the Run has said what is kept
            exit_as_signalled(err)
        except UserError as err:
            in_use = isinstance(err, DirectoryInUse)  # another process runs this: every job would be refused alike
            if multirun and not in_use:  # a failed job: the launcher records it, the sweep (or Optuna study) goes on
                log.error("%s", err)
                raise
            print(f"error: {err}", file=sys.stderr)
            if not in_use:  # its run.log is the other process's
                to_log_files(f"error: {err}")
                remove_if_unused(out_dir)
            sys.exit(2)
        late = note_signals() if not multirun else None  # complete: a signal from here on cannot undo that
        hint = target_of(run.spec["sampler"]).divergence_hint
        for k, (point, summary) in enumerate(zip(run.points, summaries, strict=True)):
            log.info("%s: %d images, mean PSNR %s, in %s", point.name, summary["ok"],
                     f"{summary['metrics']['psnr']['mean']:.2f} dB" if "psnr" in summary["metrics"] else "–",
                     point.recorder.dir, extra={"point": k})  # fmt: skip
            if summary["diverged"]:
                log.warning("%s: %d of %d results diverged (NaN or inf), left out of the metrics; %s", point.name,
                            summary["diverged"], summary["rows"], hint, extra={"point": k})  # fmt: skip
    value = objective(run, summaries, multirun)
    if run.late_signal is not None or (late is not None and late.caught):
        log.warning("a signal arrived after the results were recorded: the run is complete (exit 0)")
        if multirun:  # the sweep stops here, as asked; this job is complete, the sweep is not
            exit_as_signalled(KeyboardInterrupt(run.late_signal))
    return value


# Config options that need a Hydra plugin (or a library) from an extra: (argument prefix, module, extra).
PLUGINS = [
    ("hydra/launcher=gpus", "hydra_plugins.hydra_joblib_launcher", "launchers"),
    ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher", "launchers"),
    ("hydra/launcher=local", "hydra_plugins.hydra_submitit_launcher", "launchers"),
    ("hparams_search=", "optuna", "optuna"),  # hydra_plugins/dps_exp_sweeper/optuna_study.py drives it
]


def missing_plugin(argv: list[str]) -> str | None:
    """What to install when an argument asks for a plugin that is not installed (Hydra only says it cannot
    load the config)."""
    for prefix, module, extra in PLUGINS:
        option = next((a for a in argv if a.lstrip("+").startswith(prefix)), None)
        if option is not None and importlib.util.find_spec(module) is None:
            return f"{option} needs the '{extra}' extra: pip install -e '.[{extra}]' (or dps-exp[{extra}])"
    return None


def shared_part(argv: list[str]) -> str | None:
    """Why an `experiment=` names no task: a file starting with `_` is a part other experiments share."""
    for arg in argv:
        key, _, value = arg.lstrip("+").partition("=")
        parts = [v for v in value.split(",") if Path(v).name.startswith("_")]
        if key == "experiment" and parts:
            folder = Path(parts[0]).parent
            tasks = sorted((folder / p.stem).as_posix() for p in (CONF_DIR / "experiment" / folder).glob("[!_]*.yaml"))
            return f"experiment={parts[0]} is a part other experiments share, not a task (e.g. {', '.join(tasks[:2])})"
    return None


def continue_earlier_run(argv: list[str]) -> list[str]:
    """`resume=true` on a single run: point hydra.run.dir at the newest run with the same overrides.

    (Sweeps resume in the vectorized sweeper, which picks the sweep directory itself; Optuna studies from
    their storage.)
    """
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    study = any(o.lstrip("+").startswith("hparams_search=") for o in overrides)  # a multirun by its config
    if not resume_requested(overrides) or {"-m", "--multirun"} & set(argv) or study:
        return argv
    if any(o.startswith("hydra.run.dir=") for o in overrides):
        return argv
    previous = previous_dir(Path("outputs"), without_resume(overrides), sweep=False)
    if previous is None:
        print("resume=true: no earlier run with these overrides under outputs/; starting a new one", file=sys.stderr)
        return argv
    print(f"resume=true: continuing {previous}", file=sys.stderr)
    return [*argv, f"hydra.run.dir={previous}"]


def entry() -> None:
    """`python -m dps_exp.run` and the `dps-run` console script."""
    argv = sys.argv[1:]
    if (
        problem := missing_plugin(argv)
        or shared_part(argv)
        or hydra_problem(argv, compose_task)
        or unwritable_output(argv)
    ):
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], *continue_earlier_run(sys.argv[1:])]
    signal.signal(signal.SIGTERM, stop_on_signal)  # also between a sweep's jobs, and in a launcher's parent process
    try:
        main()
    except KeyboardInterrupt as err:  # outside a job (between jobs, in a launcher)
        exit_as_signalled(err)
