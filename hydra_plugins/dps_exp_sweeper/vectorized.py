"""A Hydra sweeper that packs per-sample hyperparameters into one job.

It expands the sweep exactly as Hydra's basic sweeper does (the Cartesian product, last parameter fastest,
job numbers in that order), then groups the jobs that differ only in per-sample keys (η, step size, mask
ratio, noise σ, seed: whatever the classes mark PER_SAMPLE) into one job whose batch carries them all, one
network pass per step for all of them. Each packed job is told the job numbers its points would have had, so
every point writes `results.jsonl`, `summary.json`, `.hydra/` and its W&B run into `<sweep dir>/<number>/`,
as a sequential multirun would. Everything else (step count, operator, prior) fans out to the launcher.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from dps_exp.errors import ConfigError

log = logging.getLogger(__name__)


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def compose_job(hydra_context: HydraContext, config: DictConfig, overrides: list[str]) -> dict:
    """A job's task config, resolved (as the Run will see it)."""
    from dps_exp.config import resolve

    cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    return resolve(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))


def cartesian(overrides: Sequence[Override]) -> list[list[str]]:
    """Every job's overrides, as Hydra's basic sweeper expands a multirun: one column per key (a key given again
    replaces its column in place), each column the key's values (`a=1,2`, `choice(…)`, `range(…)`) or its one
    value, and the jobs their Cartesian product with the last column varying fastest. The list's order is the
    job numbering."""
    columns: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()  # with its `+`, `++` or `~`
        if not override.is_sweep_override():
            columns[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            columns[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:  # an interval: its values cannot be listed
            raise ConfigError(
                f"{override.input_line}: a multirun (-m) runs listed values (a=1,2, choice(…), range(…)), not an "
                f"interval; an Optuna study (hparams_search=…) searches intervals"
            )
    return [list(job) for job in itertools.product(*columns.values())]


class Launching:
    """What both of our sweepers keep from Hydra's `setup`: its context, the config and the launcher their jobs go
    to (a mixin before `Sweeper`, so that Hydra's plugin scan sees only the sweepers)."""

    hydra_context: HydraContext | None = None
    config: DictConfig | None = None
    launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )


class VectorizedSweeper(Launching, Sweeper):
    """Hydra's basic sweep (its expansion, `hydra.sweeper.params` in a config, its `multirun.yaml`) that packs
    jobs, on Hydra's public sweeper interface."""

    def __init__(self, vectorize: bool = True, points_per_job: int | None = None, params: Mapping | None = None):
        self.vectorize, self.points_per_job = vectorize, points_per_job
        self.params = dict(params or {})

    def expand(self, arguments: list[str]) -> list[list[str]]:
        """Every job's overrides, in the basic sweeper's order (its index is the job number): the config's
        `hydra.sweeper.params` first, then the command line's, as the basic sweeper does."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        try:
            return cartesian(overrides)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    def compose(self, job: list[str]) -> dict:
        return compose_job(self.hydra_context, self.config, job)

    def per_sample_keys(self, job: list[str]) -> tuple[set[str], bool]:
        """The keys that may differ per sample in this job's composed config, and whether one of them already
        holds a list there (an experiment's `seed: [0, 1, 2, 3]`, a hand-written `sampler.eta=[0,1]`)."""
        from dps_exp.config import per_sample_keys
        from dps_exp.run.points import get_dotted
        from dps_exp.run.settings import GROUPS

        spec = self.compose(job)
        keys = {"seed"} | {k for g in GROUPS if g in spec for k in per_sample_keys(spec[g], g)}
        return keys, any(isinstance(get_dotted(spec, k), list) for k in keys)

    def pack(self, jobs: list[list[str]]) -> list[list[str]]:
        """Group the jobs that differ only in per-sample overrides; each group becomes one or more jobs. A job
        left alone runs as it is, in its own `<number>/` (Hydra writes its `.hydra/`); a packed one logs into
        `packed-<its first number>/` and its points write into their numbers' folders."""
        groups: OrderedDict[tuple, list[tuple[int, list[str]]]] = OrderedDict()
        keys_by_choice: dict[tuple, tuple[set[str], bool]] = {}
        packed = []
        for number, job in enumerate(jobs):
            choices = tuple(o for o in job if "." not in key_of(o))  # group choices decide the classes
            if choices not in keys_by_choice:
                keys_by_choice[choices] = self.per_sample_keys(job)
            keys, listed = keys_by_choice[choices]
            if listed or any(key_of(o) in keys and o.split("=", 1)[1].startswith("[") for o in job):
                packed.append(job + [f"hydra.sweep.subdir={number}"])  # its lists make its own points: as it is
                continue
            fixed = tuple(o for o in job if key_of(o) not in keys)
            groups.setdefault(fixed, []).append((number, job))
        for members in groups.values():
            size = self.points_per_job or len(members)
            for first in range(0, len(members), size):
                chunk = members[first : first + size]
                if len(chunk) == 1:
                    packed.append(jobs[chunk[0][0]] + [f"hydra.sweep.subdir={chunk[0][0]}"])
                else:
                    packed.append(self.as_lists(chunk, keys) + [f"hydra.sweep.subdir=packed-{chunk[0][0]}"])
        return packed

    @staticmethod
    def as_lists(chunk: list[tuple[int, list[str]]], keys: set[str]) -> list[str]:
        """The points' overrides in their order, each per-sample one as `key=[v1,v2,…]` zipped over the points
        (so that each point's own overrides read back as its sequential job's), then their job numbers. The
        points of a chunk come from one sweep: the same keys in the same order."""
        out = []
        for column in zip(*(job for _, job in chunk), strict=True):
            key = column[0].split("=", 1)[0]
            values = [o.split("=", 1)[1] for o in column]
            out.append(f"{key}=[{','.join(values)}]" if key_of(key) in keys else column[0])
        return out + [f"sweep_jobs=[{','.join(str(n) for n, _ in chunk)}]"]

    def validate_values(self, batch: list[list[str]], jobs: list[list[str]]) -> None:
        """Check every job's values before any job starts: a bad value in one point stops the whole sweep, with
        the message a sequential sweep gives (`sampler.eta=1.5`, not the packed list's `sampler.eta[1]=1.5`)."""
        from dps_exp.run.settings import validate

        def check(job: list[str]) -> ConfigError | None:
            try:
                validate(self.compose([o for o in job if not o.startswith("hydra.")]))
            except ConfigError as err:
                return err
            return None

        for job in batch:
            if (err := check(job)) is None:
                continue
            numbers = next((o.split("=", 1)[1] for o in job if o.startswith("sweep_jobs=")), None)
            if numbers is not None:  # a packed job: the error of the first of its points that fails on its own
                err = next(filter(None, (check(jobs[int(n)]) for n in numbers.strip("[]").split(","))), err)
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    def sweep(self, arguments: list[str]) -> Any:
        from dps_exp.run.resume import previous_dir, sweep_overrides

        jobs = self.expand(arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        extra = []
        named = any(o.startswith("hydra.sweep.dir=") for o in self.config.hydra.overrides.hydra)
        if self.config.get("resume") and named:
            log.info("resume=true: continuing the sweep in %s, as named", sweep_dir)
        elif self.config.get("resume"):
            previous = previous_dir(sweep_dir.parent.parent, sweep_overrides(self.config.hydra), sweep=True)
            if previous is not None:
                log.info("resume=true: continuing the sweep in %s", previous)
                sweep_dir = previous
                extra = [f"hydra.sweep.dir={previous}"]
            else:
                log.info("resume=true: no earlier sweep with these overrides; starting %s", sweep_dir)
        if self.vectorize:
            packed = self.pack(jobs)
            batch = [job + extra for job in packed]
            log.info("vectorized sweep: %d points in %d jobs", len(jobs), len(batch))
        else:
            batch = [job + extra for job in jobs]
        self.validate_batch_is_legal(batch)
        self.validate_values(batch, jobs)  # before the sweep's directory exists: a refused sweep leaves none
        sweep_dir.mkdir(parents=True, exist_ok=True)
        with open_dict(self.config):
            self.config.hydra.sweep.dir = str(sweep_dir)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns = self.launcher.launch(batch, initial_job_idx=0)
        for r in returns:
            _ = r.return_value  # raise here if a job failed, as the basic sweeper does
        return [returns]
