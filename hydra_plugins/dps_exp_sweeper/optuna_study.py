"""Hydra's Optuna sweeper (`hparams_search=...`), with its start and its two ends said in our words: a bad shared
value, a resumed study, a study whose every trial failed.

Optuna is an optional extra, so it is imported when a study starts, not when Hydra scans its plugins.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger(__name__)
# Optuna's import (Hydra imports it for the sampler, before this sweeper is made) logs alembic's plugin set-up.
logging.getLogger("alembic").setLevel(logging.WARNING)


class OptunaStudy(Sweeper):
    """`hydra_plugins.hydra_optuna_sweeper`'s sweeper, wrapped: a bad value the trials share stops it before the
    first trial, `resume=true` continues a stored study (and says that one kept in memory cannot be), and a study
    whose every trial failed ends with one line, not Optuna's "No trials are completed yet" traceback."""

    def __init__(self, **options: Any):
        from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

        self.study = OptunaSweeper(**options)
        self.storage, self.study_name = options.get("storage"), options.get("study_name")

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.study.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def check_shared_values(self, arguments: list[str]) -> None:
        """Stop before the first trial on a bad value every trial would share (a value on the command line, even
        of a searched key, is fixed for all trials), with the line a single run gives."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        from dps_exp.errors import ConfigError
        from dps_exp.run.settings import validate
        from hydra_plugins.dps_exp_sweeper.vectorized import compose_job

        parsed = OverridesParser.create(config_loader=self.hydra_context.config_loader).parse_overrides(arguments)
        shared = [o.input_line for o in parsed if not o.is_sweep_override()]  # Optuna fixes these for every trial
        try:
            validate(compose_job(self.hydra_context, self.config, shared))
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    def sweep(self, arguments: list[str]) -> Any:
        self.check_shared_values(arguments)
        if self.config.get("resume"):
            if self.storage is None:
                sys.exit(
                    "error: resume=true: this study is kept in memory (hydra.sweeper.storage=null), so no earlier "
                    "run of it can be continued. Give it a storage, e.g. hydra.sweeper.storage=sqlite:///study.db: "
                    "the same command then continues the stored study, adding hydra.sweeper.n_trials trials"
                )
            log.info("resume=true: study %s continues from %s", self.study_name, self.storage)
        try:
            return self.study.sweep(arguments)
        except ValueError as err:
            if "No trials are completed" not in str(err):
                raise
            sys.exit(
                f"error: every trial of the study failed; each one's reason is in its run.log under "
                f"{self.config.hydra.sweep.dir}"
            )
