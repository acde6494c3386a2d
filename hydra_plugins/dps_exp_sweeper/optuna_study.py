"""The Optuna study of `hparams_search=...` (`hydra/sweeper=optuna_study`): Optuna (≥ 4) driven directly.

Each trial is a Hydra job, launched as the basic sweeper launches jobs, into `<sweep dir>/<trial number>/`; the
job's return value (the mean PSNR) is told to Optuna. Trials run in batches of `n_jobs` (in parallel with a
parallel launcher). A study with a storage is continued by the same command (each invocation adds `n_trials`);
a bad value every trial shares stops it before the first trial, with the line a single run gives; a study whose
every trial failed ends with one line saying where the trials' `run.log`s are. The search space is written as
for the hydra-optuna-sweeper plugin (`search_space.py`); the best trial lands in `optimization_results.yaml`.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from dps_exp.errors import ConfigError
from hydra_plugins.dps_exp_sweeper.search_space import SearchSpace
from hydra_plugins.dps_exp_sweeper.vectorized import Launching, compose_job

log = logging.getLogger(__name__)


def stop(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


class OptunaStudy(Launching, Sweeper):
    """An Optuna study over Hydra jobs. `sampler` is an Optuna sampler (Hydra instantiates its `_target_`)."""

    def __init__(
        self,
        sampler: Any = None,
        direction: str = "maximize",
        storage: str | None = None,
        study_name: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 1.0,
        params: dict | None = None,
    ) -> None:
        self.sampler, self.direction, self.storage, self.study_name = sampler, direction, storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = dict(params or {})

    def check_settings(self) -> None:
        """The sweeper's own keys, each refused with one line."""
        import optuna

        if int(optuna.__version__.split(".")[0]) < 4:
            stop(f"hparams_search needs optuna>=4 (this is {optuna.__version__}): pip install -e '.[optuna]'", 2)
        checks = {
            "direction": (self.direction in ("maximize", "minimize"), "maximize or minimize"),
            "n_trials": (isinstance(self.n_trials, int) and self.n_trials >= 1, "an integer ≥ 1"),
            "n_jobs": (isinstance(self.n_jobs, int) and self.n_jobs >= 1, "an integer ≥ 1"),
            "max_failure_rate": (0 <= self.max_failure_rate <= 1, "a number in [0, 1]"),
        }
        for key, (ok, allowed) in checks.items():
            if not ok:
                stop(f"hydra.sweeper.{key}={getattr(self, key)} is not allowed: it must be {allowed}", 2)
        if self.config.get("resume") and self.storage is None:
            stop(
                "resume=true: this study is kept in memory (hydra.sweeper.storage=null), so no earlier run of it "
                "can be continued. Give it a storage, e.g. hydra.sweeper.storage=sqlite:///study.db: the same "
                "command then continues the stored study, adding hydra.sweeper.n_trials trials"
            )

    def search_space(self, arguments: list[str]) -> SearchSpace:
        """The config's `hydra.sweeper.params`, then the command line's overrides; stops before the first trial
        on a bad value every trial would share (fixed for all of them), with the line a single run gives."""
        from dps_exp.run.settings import validate

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        parsed = parser.parse_overrides([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        try:
            space = SearchSpace.parse(parsed)
            validate(compose_job(self.hydra_context, self.config, space.shared()))
        except ConfigError as err:
            stop(str(err), 2)
        return space

    def open_study(self, space: SearchSpace) -> Any:
        """The study, created or (with a storage) continued; a stored study must search each key as it did."""
        import optuna

        try:
            study = optuna.create_study(
                study_name=self.study_name, storage=self.storage, sampler=self.sampler, direction=self.direction,
                load_if_exists=True,
            )  # fmt: skip
        except Exception as err:  # SQLAlchemy and Optuna raise several types for an unusable storage
            stop(f"hydra.sweeper.storage={self.storage}: Optuna cannot open it: {str(err).splitlines()[0]}", 2)
        for key, new in space.distributions.items():  # Optuna would refuse it at the first trial, leaving it open
            old = next((t.distributions[key] for t in study.get_trials(deepcopy=False) if key in t.distributions), None)
            if old is not None and (type(old), getattr(old, "choices", 0)) != (type(new), getattr(new, "choices", 0)):
                stop(f"{key} is searched as {new}, but the study {study.study_name} in {self.storage} searched it as "
                     f"{old}: continue it with that, or start another study (hydra.sweeper.study_name=…)", 2)  # fmt: skip
        if self.config.get("resume"):
            log.info("resume=true: study %s continues from %s", self.study_name, self.storage)
        earlier = len(study.trials)
        log.info("study %s (%s), %d earlier trials; %d to run", study.study_name, self.storage or "in memory",
                 earlier, self.n_trials)  # fmt: skip
        return study

    def run_trials(self, study: Any, space: SearchSpace, count: int) -> int:
        """Ask `count` trials, run them as one batch of jobs and tell Optuna each one's value; the number failed."""
        from optuna.trial import TrialState

        trials = [study.ask(space.distributions) for _ in range(count)]
        batch = [space.overrides(trial.params) for trial in trials]
        try:
            self.validate_batch_is_legal(batch)  # a searched key the config does not have: every trial's error
        except Exception as err:
            for trial in trials:
                study.tell(trial, state=TrialState.FAIL)
            stop(f"{' '.join(batch[0][: len(space.distributions)])}: {str(err).splitlines()[0]}", 2)
        returns = self.launcher.launch(batch, initial_job_idx=trials[0].number)  # job number = trial number
        failed = 0
        for trial, job, ret in zip(trials, batch, returns, strict=True):
            try:
                value = float(ret.return_value)  # raises the job's error if it failed
                if not math.isfinite(value):
                    raise ValueError(f"the job returned {value}, not a value Optuna can rank")
            except Exception as err:  # any failure of a trial is the trial's, and the study goes on
                study.tell(trial, state=TrialState.FAIL)
                drawn = " ".join(job[: len(space.distributions)])
                log.warning("Failed experiment: trial %d (%s): %s", trial.number, drawn, err)
                failed += 1
            else:
                study.tell(trial, value)
        return failed

    def sweep(self, arguments: list[str]) -> Any:
        from optuna.trial import TrialState

        self.check_settings()
        space = self.search_space(arguments)
        study = self.open_study(space)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        for first in range(0, self.n_trials, self.n_jobs):
            count = min(self.n_jobs, self.n_trials - first)
            if (failed := self.run_trials(study, space, count)) / count > self.max_failure_rate:
                stop(f"{failed} of {count} trials of a batch failed, more than hydra.sweeper.max_failure_rate="
                     f"{self.max_failure_rate} allows; each one's reason is in its run.log under {sweep_dir}")  # fmt: skip
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            stop(f"every trial of the study failed; each one's reason is in its run.log under {sweep_dir}")
        best = study.best_trial
        log.info("Best trial %d: %s, value %s", best.number, best.params, best.value)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        return study
