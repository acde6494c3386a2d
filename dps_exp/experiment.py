"""The Run: the one place where schedule, physics, prior, sampler, data, metrics and logging meet.

It is built from the composed Hydra config (validated first, so a bad value costs no work) and `execute()`
loops over batches of (image, sweep point) pairs: measure, sample, score, record. Images are in [0, 1]
outside and [-1, 1] inside; `to_signed` and `to_unit` below are the only conversions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from omegaconf import DictConfig
from torch import Tensor
from tqdm.auto import tqdm

import dps_exp
from dps_exp import batch
from dps_exp.config import PER_SAMPLE, Range, build, check_node, per_sample_keys, resolve
from dps_exp.data import Images, Item
from dps_exp.denoisers.base import Denoiser
from dps_exp.errors import ConfigError, DataError
from dps_exp.metrics import Metrics
from dps_exp.schedule import Schedule
from dps_exp.tracking import Logger, Recorder

log = logging.getLogger(__name__)

GROUPS = ("schedule", "physics", "denoiser", "sampler", "data", "metrics", "logger")
INJECTED = {"denoiser": frozenset({"schedule"})}
"""Constructor arguments the Run supplies itself rather than the config."""


class Settings:
    """Top-level keys of conf/config.yaml."""

    def __init__(
        self,
        seed: Annotated[int, Range(0, None), PER_SAMPLE] = 0,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        progress: bool = True,
    ):
        self.seed, self.device, self.progress = seed, device, progress


def to_signed(x: Tensor) -> Tensor:
    """[0, 1] → [-1, 1], where the prior and the physics live."""
    return x * 2.0 - 1.0


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] → [0, 1], clipped, for metrics and pictures."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def validate(spec: Mapping) -> None:
    """Check every group against its class signature and the top-level keys against Settings."""
    for group in GROUPS:
        if group not in spec:
            raise ConfigError(f"the config has no '{group}' group")
        check_node(spec[group], group, injected=INJECTED.get(group, frozenset()))
    top = {k: v for k, v in spec.items() if k not in GROUPS}
    check_node(top, "", target=Settings)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda is not allowed here: no CUDA device is available (use device=auto or cpu)")
    return torch.device(name)


def point_id(point: Mapping[str, Any]) -> str:
    """A short, stable name for a sweep point (its per-sample values), used in result keys."""
    return hashlib.sha1(json.dumps(dict(point), sort_keys=True).encode()).hexdigest()[:8]


def config_id(spec: Mapping, per_sample: Sequence[str]) -> str:
    """A short hash of what determines a result besides its sweep point: rows of another config never mix."""
    static = {g: spec[g] for g in ("schedule", "physics", "denoiser", "sampler")}
    static["data"] = {k: v for k, v in spec["data"].items() if k not in ("batch_size", "limit")}
    for key in per_sample:
        if "." in key:
            group, rest = key.split(".", 1)
            static[group] = with_values(static[group], group, {key: None})
    return point_id(static)


def get_dotted(spec: Mapping, key: str) -> Any:
    for part in key.split("."):
        spec = spec[part]
    return spec


def with_values(node: Mapping, prefix: str, values: Mapping[str, Any]) -> dict:
    """A copy of a config node with the per-sample keys under `prefix` replaced by `values`."""
    out = {}
    for k, v in node.items():
        full = f"{prefix}.{k}"
        out[k] = with_values(v, full, values) if isinstance(v, Mapping) else values.get(full, v)
    return out


def flatten(node: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in node.items():
        if k == "_target_":
            continue
        full = f"{prefix}{k}"
        out.update(flatten(v, full + ".") if isinstance(v, Mapping) else {full: v})
    return out


class Run:
    """One experiment: every (image, sweep point) pair of `data` × `points`, recorded in `out_dir`."""

    def __init__(
        self,
        spec: Mapping,
        out_dir: Path,
        points: Sequence[Mapping[str, Any]] | None = None,
        name: str = "run",
    ):
        validate(spec)
        self.spec = spec
        self.settings = Settings(**{k: v for k, v in spec.items() if k not in GROUPS})
        self.device = resolve_device(self.settings.device)
        self.per_sample = ["seed"] + [k for g in GROUPS for k in per_sample_keys(spec[g], g)]
        self.points = [self.complete(p) for p in points] if points else [self.default_point()]
        self.name = name
        self.config_id = config_id(spec, self.per_sample)

        self.schedule: Schedule = build(spec["schedule"]).to(self.device)
        self.data: Images = build(spec["data"])
        self.metrics: Metrics = build(spec["metrics"])
        self.logger: Logger = build(spec["logger"])
        self.denoiser: Denoiser = build(spec["denoiser"], schedule=self.schedule)
        self.denoiser.to(self.device).eval().requires_grad_(False)
        self.recorder = Recorder(out_dir)

    @classmethod
    def from_config(cls, cfg: DictConfig, out_dir: Path, name: str = "run") -> Run:
        return cls(resolve(cfg), Path(out_dir), name=name)

    def default_point(self) -> dict[str, Any]:
        return {k: get_dotted(self.spec, k) for k in self.per_sample}

    def complete(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The point with every per-sample key: one it leaves out takes the config's value."""
        return self.default_point() | dict(point)

    # -----------------------------------------------------------------------------------------------------

    def build_for_batch(self, group: str, values: Mapping[str, Sequence[Any]]) -> Any:
        """Instantiate a group for one batch; a per-sample key whose values differ becomes a (B,) tensor."""
        merged = {}
        for key, vals in values.items():
            if key.startswith(group + "."):
                same = all(v == vals[0] for v in vals)
                merged[key] = vals[0] if same else torch.tensor(vals, dtype=torch.float64)
        return build(with_values(self.spec[group], group, merged))

    def row_key(self, item: Item, point: Mapping) -> str:
        return f"{item.index:05d}-{point_id(point)}"

    def execute(self) -> dict:
        """Run every pair not yet in results.jsonl; write summary.json; return the summary."""
        start = time.perf_counter()
        rows = self.recorder.rows()
        foreign = {r.get("config_id") for r in rows} - {self.config_id}
        if foreign:
            raise ConfigError(
                f"{self.recorder.dir} already holds results of another configuration (config_id "
                f"{sorted(map(str, foreign))[0]}, this run is {self.config_id}): choose another hydra.run.dir"
            )
        done = {r["key"] for r in rows}
        jobs = [(it, p) for it in self.data.items() for p in self.points if self.row_key(it, p) not in done]
        self.logger.start(self.spec, self.recorder.dir, self.name)
        status = "interrupted"
        try:
            with tqdm(total=len(jobs), desc="images", unit="img", disable=not self.settings.progress) as bar:
                for first in range(0, len(jobs), self.data.batch_size):
                    chunk = jobs[first : first + self.data.batch_size]
                    self.run_batch(chunk)
                    bar.update(len(chunk))
            status = "complete"
        except KeyboardInterrupt:
            log.error("interrupted: finished images are in %s; run again to continue", self.recorder.results_path)
            raise
        finally:
            summary = self.summarize(status, time.perf_counter() - start)
            self.recorder.write_summary(summary)
            self.logger.finish(summary, self.recorder.rows())
        return summary

    def load(self, chunk: Sequence[tuple[Item, Mapping]]) -> tuple[list, Tensor | None]:
        """Load the chunk's images; unreadable ones are recorded by name and left out."""
        kept, images, cache = [], [], {}
        for item, point in chunk:
            try:
                if item.index not in cache:
                    cache[item.index] = self.data.load(item)
            except DataError as err:
                log.error("%s", err)
                self.recorder.append(self.base_row(item, point) | {"status": "unreadable", "error": str(err)})
                continue
            kept.append((item, point))
            images.append(cache[item.index])
        return kept, (torch.stack(images) if images else None)

    def run_batch(self, chunk: Sequence[tuple[Item, Mapping]]) -> Tensor | None:
        """Measure, sample, score and record one batch; returns the reconstructions (B, 3, H, W) in [0, 1]."""
        chunk, images = self.load([(item, self.complete(point)) for item, point in chunk])
        if not chunk:
            return None
        tic = time.perf_counter()
        x = to_signed(images.to(self.device))
        values = {k: [point[k] for _, point in chunk] for k in self.per_sample}
        seeds, indices = values["seed"], [item.index for item, _ in chunk]

        physics = self.build_for_batch("physics", values).draw(
            x.shape, batch.generators(seeds, indices, "operator"), x.device
        )
        y = physics.measure(x, batch.generators(seeds, indices, "measurement"))
        sampler = self.build_for_batch("sampler", values)
        gens = batch.generators(seeds, indices, "sampler", self.device)
        result = sampler.sample(
            y,
            physics,
            self.denoiser,
            self.schedule,
            noise=lambda: batch.randn(x.shape, gens),
            progress=self.settings.progress,
        )
        x_hat = to_unit(result.x)
        scores = {k: v.cpu().tolist() for k, v in self.metrics(x_hat, images.to(self.device)).items()}
        diverged_at = result.diverged_at.cpu().tolist()
        seconds = (time.perf_counter() - tic) / len(chunk)

        y_img = to_unit(physics.to_image(y)).cpu()
        states = {k: v.cpu() for k, v in physics.state().items()}
        for b, (item, point) in enumerate(chunk):
            key = self.row_key(item, point)
            panel = self.recorder.save_panel(key, [y_img[b], x_hat[b].cpu(), images[b]])
            operator = self.recorder.save_operator(key, {k: v[b] for k, v in states.items()})
            diverged = diverged_at[b] >= 0
            row = self.base_row(item, point) | {
                "status": "diverged" if diverged else "ok",
                "diverged_step": diverged_at[b] if diverged else None,
                "metrics": {k: (float("nan") if diverged else v[b]) for k, v in scores.items()},
                "nfe": len(sampler.timesteps(self.schedule)),
                "seconds": seconds,
                "image": panel,
                "operator": operator,
            }
            self.recorder.append(row)
            self.logger.log_row(row, self.recorder.dir / panel)
        return x_hat.cpu()

    def base_row(self, item: Item, point: Mapping) -> dict:
        params = {}
        for group in ("schedule", "physics", "denoiser", "sampler"):
            params.update(flatten(self.spec[group], group + "."))
        params.update(point)
        return {
            "key": self.row_key(item, point),
            "config_id": self.config_id,
            "index": item.index,
            "source": item.source,
            "point": dict(point),
            "seed": point["seed"],
            "params": params,
        }

    def summarize(self, status: str, wall_time: float) -> dict:
        rows = self.recorder.rows()
        ok = [r for r in rows if r["status"] == "ok"]
        metrics = {}
        for name in self.metrics.names:
            vals = [r["metrics"][name] for r in ok if r["metrics"].get(name) is not None]
            if vals:
                metrics[name] = {
                    "mean": statistics.fmean(vals),
                    "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                    "min": min(vals),
                    "max": max(vals),
                    "n": len(vals),
                }
        return {
            "status": status,
            "rows": len(rows),
            "ok": len(ok),
            "diverged": sum(r["status"] == "diverged" for r in rows),
            "unreadable": sum(r["status"] == "unreadable" for r in rows),
            "metrics": metrics,
            "wall_time_s": wall_time,
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "versions": {"dps_exp": dps_exp.__version__, "torch": torch.__version__},
            "points": self.points,
            "config": self.spec,
        }
