"""Sweep points: the per-sample hyperparameter values a job runs, and where each point's results go.

A per-sample key (`seed`, `sampler.eta`, `sampler.step_size`, `physics.mask`, `physics.noise.sigma`, …)
may hold a list in the config: the lists (all of one length, or length 1) are zipped into that many points,
which share batches and network passes. The vectorized sweeper packs a multirun's per-sample overrides this
way and passes `sweep_jobs`, the job number each point would have had in a sequential multirun, so every
point writes into the same directory, with the same files, as it would have there.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from dps_exp.errors import ConfigError
from dps_exp.run.loggers import Logger
from dps_exp.run.recorder import Recorder
from dps_exp.run.resume import without_resume


def canonical(value: Any) -> Any:
    """Numbers as floats, recursively: `step_size=1` and `step_size=1.0` are one setting."""
    if isinstance(value, Mapping):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def point_id(values: Mapping[str, Any]) -> str:
    """A short, stable name for a sweep point (its per-sample values, or any config node), used in result keys."""
    return hashlib.sha1(json.dumps(canonical(dict(values)), sort_keys=True).encode()).hexdigest()[:8]


def differences(there: Mapping[str, Any], here: Mapping[str, Any]) -> str:
    """`key=a there, b here` for each value that differs between two points."""
    keys = [k for k in {**there, **here} if canonical(there.get(k)) != canonical(here.get(k))]
    return "; ".join(f"{k}={there.get(k)} there, {here.get(k)} here" for k in keys)


def get_dotted(spec: Mapping, key: str) -> Any:
    for part in key.split("."):
        spec = spec[part]
    return spec


def with_values(node: Mapping, prefix: str, values: Mapping[str, Any]) -> dict:
    """A copy of a config node with the dotted keys under `prefix` replaced by `values`."""
    out = {}
    for k, v in node.items():
        full = f"{prefix}.{k}" if prefix else k
        out[k] = with_values(v, full, values) if isinstance(v, Mapping) else values.get(full, v)
    return out


def flatten(node: Mapping, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested config (without `_target_`s)."""
    out = {}
    for k, v in node.items():
        if k == "_target_":
            continue
        full = f"{prefix}{k}"
        out.update(flatten(v, full + ".") if isinstance(v, Mapping) else {full: v})
    return out


def expand(spec: Mapping, keys: Sequence[str]) -> list[dict[str, Any]]:
    """The points a config asks for: per-sample keys holding lists are zipped (length-1 lists broadcast)."""
    columns = {k: get_dotted(spec, k) for k in keys}
    lengths = {len(v) for v in columns.values() if isinstance(v, list) and len(v) != 1}
    if len(lengths) > 1:
        listed = ", ".join(f"{k} ({len(v)})" for k, v in columns.items() if isinstance(v, list))
        raise ConfigError(f"per-sample lists must have one length to be zipped into points; got {listed}")
    n = lengths.pop() if lengths else 1
    return [
        {k: (v[i] if len(v) > 1 else v[0]) if isinstance(v, list) else v for k, v in columns.items()} for i in range(n)
    ]


def overrides_for(job_overrides: Sequence[str], values: Mapping[str, Any], listed: Sequence[str]) -> list[str]:
    """A point's own overrides, as a sequential multirun job would have had them: the job's overrides in
    their order, each listed per-sample key replaced by `key=<this point's value>`."""
    out, seen = [], set()
    for override in job_overrides:
        written = override.split("=", 1)[0]  # with its `+`, if any
        key = written.lstrip("+")
        if key == "sweep_jobs":
            continue
        if key in listed:
            out.append(f"{written}={values[key]}")
            seen.add(key)
        else:
            out.append(override)
    return out + [f"{k}={values[k]}" for k in listed if k not in seen]


def sweep_group(sweep_dir: Path) -> str:
    """The W&B group of a sweep's runs (and of its report): `<date>/<time>` of the sweep directory."""
    return f"{Path(sweep_dir).parent.name}/{Path(sweep_dir).name}"


def dirname(overrides: Sequence[str]) -> str:
    """Hydra's `override_dirname`: the overrides sorted and joined with commas."""
    return ",".join(sorted(overrides))


def override_dirname(overrides: Sequence[str], exclude_keys: Sequence[str], item_sep: str, kv_sep: str) -> str:
    """`hydra.job.override_dirname` as Hydra makes it from a job's overrides: each override as written, less those
    whose key (without its `+`/`~` or `@package`) is in `exclude_keys`, sorted, joined with `item_sep`, and then
    every `=` in that string (a value's too, as Hydra does) replaced by `kv_sep`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    kept = sorted(o.input_line for o in parsed if o.key_or_group not in exclude_keys)
    return item_sep.join(kept).replace("=", kv_sep)


@dataclass
class Point:
    """One sweep point: per-sample values, its directory (recorder) and its logger."""

    values: dict[str, Any]
    recorder: Recorder
    logger: Logger
    name: str
    overrides: list[str]
    config: dict
    """The point's own resolved config, as its sequential job would have had it (one value per key)."""
    number: int | None = None
    """Its job number in a sequential multirun, when the sweeper packed it."""
    listed: bool = False
    """Whether it is one of several points listed in one run's config (it then writes its own `.hydra/`)."""
    done: set[str] = field(default_factory=set)
    """The keys of its rows already recorded (a resumed run skips them)."""

    @property
    def id(self) -> str:
        return point_id(self.values)

    def write_hydra_files(self, task: DictConfig | None = None, hydra: DictConfig | None = None) -> None:
        """The `.hydra/` files a sequential multirun job would have had (packed points have no Hydra job of
        their own), made from the packed job's `task` config (interpolations kept, as Hydra saves them) and its
        `hydra` config, when there are those."""
        hydra_dir = self.recorder.dir / ".hydra"
        hydra_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.own_task(task) if task is not None else OmegaConf.create(self.config),
                       hydra_dir / "config.yaml")  # fmt: skip
        if hydra is not None:
            OmegaConf.save(self.own_hydra(hydra), hydra_dir / "hydra.yaml")
        OmegaConf.save(OmegaConf.create(self.overrides), hydra_dir / "overrides.yaml")

    def own_task(self, task: DictConfig) -> DictConfig:
        cfg = copy.deepcopy(task)
        with read_write(cfg), open_dict(cfg):
            for key, value in self.values.items():
                OmegaConf.update(cfg, key, value)
            cfg.sweep_jobs = None
        return cfg

    def own_hydra(self, hydra: DictConfig) -> DictConfig:
        """The packed job's Hydra config as this point's job would have had it: its overrides, override_dirname,
        output dir and (when packed by the sweeper) job number, the sweep's own `hydra.sweep.subdir`."""
        hc = copy.deepcopy(hydra)
        with read_write(hc), open_dict(hc):
            hc.overrides.task = list(self.overrides)
            naming = hc.job.config.override_dirname
            hc.job.override_dirname = override_dirname(
                self.overrides, exclude_keys=list(naming.exclude_keys), item_sep=naming.item_sep, kv_sep=naming.kv_sep
            )
            hc.runtime.output_dir = os.path.abspath(self.recorder.dir)
            if self.number is not None:
                hc.overrides.hydra = [o for o in hc.overrides.hydra if not o.startswith("hydra.sweep.subdir=")]
                sweep = OmegaConf.to_container(OmegaConf.load(Path(hc.sweep.dir) / "multirun.yaml").hydra.sweep)
                hc.sweep.subdir = sweep["subdir"]  # as written there: `${hydra.job.num}`
                numbered = {str(hc.job.num): self.number, f"{hc.job.name}_{hc.job.num}": f"{hc.job.name}_{self.number}"}
                hc.job.id = numbered.get(str(hc.job.id), hc.job.id)  # the basic and joblib launchers' ids
                hc.job.num = self.number
        return OmegaConf.create({"hydra": hc})


class PointLogs(logging.Handler):
    """Each packed point's `run.log`, as its sequential job would have written it: the job's records from the
    start (held until the points are known), less those about another point (`extra={"point": k}`)."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] | None = []
        self.files: list[logging.FileHandler] = []

    def __enter__(self) -> PointLogs:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)
        for handler in self.files:
            handler.close()

    def open(self, points: Sequence[Point]) -> None:
        """Start writing: a file per packed point, in the job log's name and format (none when not packed)."""
        job_log = next((h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)), None)
        held, self.held = self.held or [], None
        if job_log is None or not any(p.number is not None for p in points):
            return
        for k, point in enumerate(points):
            handler = logging.FileHandler(point.recorder.dir / Path(job_log.baseFilename).name)
            handler.setFormatter(job_log.formatter)
            handler.setLevel(job_log.level)
            handler.addFilter(lambda record, k=k: getattr(record, "point", k) == k)
            self.files.append(handler)
        for record in held:
            self.emit(record)

    def emit(self, record: logging.LogRecord) -> None:
        if self.held is not None:
            self.held.append(record)
        for handler in self.files:
            handler.handle(record)


def make_points(
    spec: Mapping,
    per_sample: Sequence[str],
    out_dir: Path,
    sweep_dir: Path | None,
    overrides: Sequence[str],
    sweep_jobs: Sequence[int] | None,
) -> list[Point]:
    """The points a job runs, each with its directory (not yet claimed), logger, name, overrides and config as
    its sequential job would have had them."""
    from dps_exp.config import build  # hydra.utils, only where points are made

    values = expand(spec, per_sample)
    dirs = point_dirs(len(values), out_dir, sweep_dir, sweep_jobs)
    listed = [k for k in per_sample if isinstance(get_dotted(spec, k), list)]
    # a sweep's points, or the points listed by hand in one run, are one W&B group
    group = sweep_group(sweep_dir or out_dir) if sweep_dir is not None or len(values) > 1 else None
    points = []
    for vals, directory, number in zip(values, dirs, sweep_jobs or [None] * len(values), strict=True):
        point_overrides = overrides_for(overrides, vals, listed)
        logger: Logger = build(spec["logger"])
        logger.group = logger.group or group
        config = with_values(spec, "", vals) | {"sweep_jobs": None}
        name = dirname(without_resume(point_overrides)) or "default"  # a resumed run keeps its W&B name
        points.append(Point(vals, Recorder(directory), logger, name, point_overrides, config, number, bool(listed)))
    return points


def point_dirs(n: int, out_dir: Path, sweep_dir: Path | None, sweep_jobs: Sequence[int] | None) -> list[Path]:
    """Where each point writes: its sequential job's directory when packed by the sweeper, else the run
    directory (one point) or `point-K/` inside it (points listed by hand, e.g. by an experiment's config,
    also inside a sweep's job directory)."""
    if sweep_jobs is not None:
        if len(sweep_jobs) != n or sweep_dir is None:
            raise ConfigError(f"sweep_jobs names {len(sweep_jobs)} jobs for {n} points")
        return [Path(sweep_dir) / str(j) for j in sweep_jobs]
    return [Path(out_dir)] if n == 1 else [Path(out_dir) / f"point-{k}" for k in range(n)]
