"""The Run: the one place where schedule, physics, prior, sampler, data, metrics and logging meet.

It is built from the composed Hydra config (validated first, so a bad value costs no work) and `execute()`
loops over batches of (image, sweep point) pairs: measure, sample, score, record. Images are in [0, 1]
outside and [-1, 1] inside; `to_signed` and `to_unit` below are the only conversions.
"""

from __future__ import annotations

import logging
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
from dps_exp.analysis.report import fid_from_disk
from dps_exp.config import PER_SAMPLE, Range, build, check_node, per_sample_keys, resolve, target_of
from dps_exp.data.images import Images, Item
from dps_exp.denoisers.base import Denoiser
from dps_exp.errors import ConfigError, DataError
from dps_exp.metrics.image import Metrics
from dps_exp.run.devices import layout_advice, resolve_device
from dps_exp.run.draws import Draw, ExactPosteriors, Unit, sampler_stream, set_scores
from dps_exp.run.points import (
    Point,
    differences,
    dirname,
    expand,
    flatten,
    get_dotted,
    overrides_for,
    point_dirs,
    point_id,
    sweep_group,
    with_values,
)
from dps_exp.run.resume import without_resume
from dps_exp.run.tracking import Recorder, aggregate, counts, signals_held
from dps_exp.schedule import Schedule

log = logging.getLogger(__name__)

GROUPS = ("schedule", "physics", "denoiser", "sampler", "data", "metrics", "logger")


class Settings:
    """Every run's seed, device and speed settings.

    Args:
        seed: each image's random streams derive from (seed, image index)
        device: `auto` (CUDA when available; in a sweep on several GPUs each parallel job claims its own), `cpu` or
            `cuda`
        precision: `fp32` or `bf16`: autocast around the network (the DPS update stays fp32)
        compile: `torch.compile` the network (its first steps are slow while it compiles)
        channels_last: the network in channels_last memory format: faster on CPUs; on CUDA only with `compile=true`
            (eager, the UNet's GroupNorms convert the layout back and forth; a warning says so)
        progress: progress bars over images and sampler steps
        resume: `true`: continue the newest run (with `-m`: sweep) whose overrides are the same, instead of a new
            directory
        sweep_jobs: set by the vectorized sweeper: the sequential job number of each packed point (leave it alone)
    """

    def __init__(
        self,
        seed: Annotated[int, Range(0, None), PER_SAMPLE] = 0,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        precision: Literal["fp32", "bf16"] = "fp32",
        compile: bool = False,
        channels_last: bool = False,
        progress: bool = True,
        resume: bool = False,
        sweep_jobs: list[int] | None = None,
    ):
        self.seed, self.device, self.progress, self.resume = seed, device, progress, resume
        self.precision, self.compile, self.channels_last = precision, compile, channels_last
        self.sweep_jobs = sweep_jobs


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
        check_node(spec[group], group)
    top = {k: v for k, v in spec.items() if k not in GROUPS}
    check_node(top, "", target=Settings)
    prior = target_of(spec["denoiser"])
    if spec["sampler"].get("variance") == "learned" and not getattr(prior, "learned_variance", False):
        raise ConfigError(
            f"sampler.variance=learned needs a prior with learned variance (denoiser=ffhq, imagenet or random_adm); "
            f"{prior.__name__} has none (use sampler.variance=eta)"
        )


def config_id(spec: Mapping, per_sample: Sequence[str]) -> str:
    """A short hash of what determines a result besides its sweep point: rows of another config never mix."""
    static = {g: spec[g] for g in ("schedule", "physics", "denoiser", "sampler")}
    static["data"] = {k: v for k, v in spec["data"].items() if k not in ("batch_size", "limit", "shard", "num_shards")}
    return point_id(with_values(static, "", {k: None for k in per_sample}))


class Run:
    """One job: every (image, sweep point) pair of `data` × points, each point recorded in its directory.

    `out_dir` is the job's directory; `sweep_dir` the multirun's (for points packed by the sweeper);
    `overrides` the job's command-line overrides (to name points as a sequential multirun would); `job` the
    Hydra job's task config (unresolved) and Hydra config, from which listed points write their `.hydra/`.
    """

    def __init__(
        self,
        spec: Mapping,
        out_dir: Path,
        sweep_dir: Path | None = None,
        overrides: Sequence[str] = (),
        job: tuple[DictConfig, DictConfig] | None = None,
    ):
        validate(spec)
        self.spec = spec
        self.settings = Settings(**{k: v for k, v in spec.items() if k not in GROUPS})
        self.device, self._gpu_claim = resolve_device(self.settings.device, sweep_dir)
        self.per_sample = ["seed"] + [k for g in GROUPS for k in per_sample_keys(spec[g], g)]
        self.config_id = config_id(spec, self.per_sample)

        self.schedule: Schedule = build(spec["schedule"]).to(self.device)
        self.data: Images = build(spec["data"])
        self.metrics: Metrics = build(spec["metrics"])
        self.metric_weights = self.metrics.check()  # a missing LPIPS/FID backbone stops the run before any work
        self.denoiser: Denoiser = build(spec["denoiser"], schedule=self.schedule)
        self.denoiser.to(self.device).eval().requires_grad_(False)
        self.denoiser.accelerate(self.settings.precision, self.settings.compile, self.settings.channels_last)
        if advice := layout_advice(self.device, self.denoiser.channels_last, self.settings.compile):
            log.warning(advice)
        self.check_fits(expand(spec, self.per_sample)[0])
        self.job = job
        self.points = self.make_points(Path(out_dir), sweep_dir, list(overrides))
        self.samples: int = spec["sampler"].get("samples", 1)
        self.pending: dict[str, Unit] = {}
        self.exact_posteriors = ExactPosteriors(self.denoiser)

    def check_fits(self, values: Mapping[str, Any]) -> None:
        """Stop before any work when the images do not fit the prior or the operator (a UNet that cannot halve
        them, a box larger than the image, a blur's padding wider than it): one operator is drawn and applied
        to a blank image of the run's shape, on the CPU."""
        shape = (getattr(self.data, "channels", 3), self.data.size, self.data.size)
        self.denoiser.check_shape(shape)
        physics = self.build_for_batch("physics", {k: [v] for k, v in values.items()})
        physics.draw((1, *shape), batch.generators([0], [0], "check"), torch.device("cpu"))
        try:
            physics.A(torch.zeros(1, *shape))
        except RuntimeError as err:
            raise ConfigError(
                f"{type(physics).__name__} cannot measure {shape} images: {err}".splitlines()[0]
            ) from None

    @classmethod
    def from_config(cls, cfg: DictConfig, out_dir: Path, hydra: DictConfig | None = None, **kwargs: Any) -> Run:
        """A Run of a Hydra job's config (`hydra`: its Hydra config, so that packed points write its files)."""
        return cls(resolve(cfg), Path(out_dir), job=(cfg, hydra) if hydra is not None else None, **kwargs)

    def make_points(self, out_dir: Path, sweep_dir: Path | None, overrides: list[str]):
        values = expand(self.spec, self.per_sample)
        dirs = point_dirs(len(values), out_dir, sweep_dir, self.settings.sweep_jobs)
        listed = [k for k in self.per_sample if isinstance(get_dotted(self.spec, k), list)]
        # a sweep's points, or the points listed by hand in one run, are one W&B group
        group = sweep_group(sweep_dir or out_dir) if sweep_dir is not None or len(values) > 1 else None
        names = {item.index: Path(item.source).name for item in self.data.items()}
        points = []
        numbers = self.settings.sweep_jobs or [None] * len(values)
        for vals, directory, number in zip(values, dirs, numbers, strict=True):
            point_overrides = overrides_for(overrides, vals, listed)
            logger = build(self.spec["logger"])
            logger.group = getattr(logger, "group", None) or group
            config = with_values(self.spec, "", vals) | {"sweep_jobs": None}
            name = dirname(without_resume(point_overrides)) or "default"  # a resumed run keeps its W&B name
            point = Point(vals, Recorder(directory), logger, name, point_overrides, config, number)
            rows = point.recorder.rows()
            foreign = {r.get("config_id") for r in rows} - {self.config_id}
            if foreign:
                raise ConfigError(
                    f"{directory} already holds results of another configuration (config_id "
                    f"{sorted(map(str, foreign))[0]}, this run is {self.config_id}): choose another output directory"
                )
            other = next((r for r in rows if not r["key"].endswith(f"-{point.id}")), None)
            if other is not None:
                raise ConfigError(
                    f"{directory} already holds results of another sweep point "
                    f"({differences(other.get('point', {}), vals)}): choose another output directory"
                )
            absent = next((r for r in rows if r["index"] not in names), None)
            if absent is not None:  # its summary would count images this run's list (images.txt) does not hold
                raise ConfigError(
                    f"{directory} holds results for image {absent['index']} ({Path(absent['source']).name}), which "
                    "is not among this run's images (data.limit, data.shard or data.root changed): choose another "
                    "output directory, or run with the earlier image list"
                )
            moved = next((r for r in rows if Path(r["source"]).name != names[r["index"]]), None)
            if moved is not None:  # rows are keyed by image index: resuming over another list would mix images up
                raise ConfigError(
                    f"{directory} holds results for another image list (image {moved['index']} was "
                    f"{Path(moved['source']).name} there, is {names[moved['index']]} now): choose another output directory"
                )
            point.done = {r["key"] for r in rows if r.get("status") != "unreadable"}  # a mended file is retried
            if listed:
                point.write_hydra_files(*(self.job or ()))
            points.append(point)
        return points

    # -----------------------------------------------------------------------------------------------------

    def build_for_batch(self, group: str, values: Mapping[str, Sequence[Any]]) -> Any:
        """Instantiate a group for one batch; a per-sample key whose values differ becomes a (B,) tensor."""
        merged = {}
        for key, vals in values.items():
            if key.startswith(group + "."):
                same = all(v == vals[0] for v in vals)
                merged[key] = vals[0] if same else torch.tensor(vals, dtype=torch.float64)
        return build(with_values(self.spec[group], group, merged))

    @staticmethod
    def row_key(item: Item, point: Point) -> str:
        return f"{item.index:05d}-{point.id}"

    def execute(self) -> list[dict]:
        """Run every (image, point) pair not yet recorded; write each point's summary; return the summaries."""
        start = time.perf_counter()
        draws = range(self.samples)
        jobs = [
            (it, p, s)
            for it in self.data.items()
            for p in self.points
            if self.row_key(it, p) not in p.done
            for s in draws
        ]
        if not self.data.items():  # more shards than images: this one finishes with nothing to do
            log.warning("this shard (data.shard=%s of data.num_shards=%s) holds no image: nothing to run",
                        getattr(self.data, "shard", 0), getattr(self.data, "num_shards", 1))  # fmt: skip
        for point in self.points:
            point.logger.start(point.config, point.recorder.dir, point.name)
            point.recorder.write_image_list([item.source for item in self.data.items()])
        status = "failed"
        try:
            with tqdm(total=len(jobs), desc="images", unit="img", disable=not self.settings.progress) as bar:
                for first in range(0, len(jobs), self.data.batch_size):
                    chunk = jobs[first : first + self.data.batch_size]
                    self.run_batch(chunk)
                    bar.update(len(chunk))
            status = "complete"
        except KeyboardInterrupt:
            status = "interrupted"
            log.error("interrupted: finished images are recorded; to continue, run the same command with "
                      "resume=true (or into this directory)")  # fmt: skip
            raise
        finally:
            summaries = []
            with signals_held():
                for point in self.points:
                    summary = self.summarize(point, status, time.perf_counter() - start)
                    point.recorder.write_summary(summary)
                    point.logger.finish(summary, point.recorder.rows())
                    summaries.append(summary)
                if self._gpu_claim is not None:
                    self._gpu_claim.close()
        return summaries

    def load(self, chunk: Sequence[tuple[Item, Point, int]]) -> tuple[list, Tensor | None]:
        """Load the chunk's images; unreadable ones are recorded by name (once, not per draw) and left out."""
        kept, images, cache = [], [], {}
        for item, point, draw in chunk:
            try:
                if item.index not in cache:
                    cache[item.index] = self.data.load(item)
            except DataError as err:
                if draw == 0:
                    log.error("%s", err)
                    point.recorder.append(self.base_row(item, point) | {"status": "unreadable", "error": str(err)})
                continue
            kept.append((item, point, draw))
            images.append(cache[item.index])
        return kept, (torch.stack(images) if images else None)

    def run_batch(self, chunk: Sequence[tuple[Item, Point, int]]) -> Tensor | None:
        """Measure, sample and score one batch of (image, point, draw) triples, recording each (image, point)
        once its draws are all in; returns the reconstructions (B, 3, H, W) in [0, 1]."""
        chunk, images = self.load(chunk)
        if not chunk:
            return None
        tic = time.perf_counter()
        x = to_signed(images.to(self.device))
        values = {k: [point.values[k] for _, point, _ in chunk] for k in self.per_sample}
        seeds, indices = values["seed"], [item.index for item, _, _ in chunk]

        physics = self.build_for_batch("physics", values)
        physics.draw(x.shape, batch.generators(seeds, indices, "operator"), x.device)
        y = physics.measure(x, batch.generators(seeds, indices, "measurement"))
        sampler = self.build_for_batch("sampler", values)
        streams = [sampler_stream(draw) for _, _, draw in chunk]
        gens = batch.generators(seeds, indices, streams, self.device)
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

        keys, first = [self.row_key(item, point) for item, point, _ in chunk], {}
        starts = [b for b, key in enumerate(keys) if key not in self.pending and first.setdefault(key, b) == b]
        exact = self.exact_posteriors(physics, y, x.shape[1:], starts) if self.samples > 1 else {}
        x_host = result.x.cpu()
        y_img = to_unit(physics.to_image(y)).cpu()
        states = {k: v.cpu() for k, v in physics.state().items()}
        for b, (key, (item, point, draw)) in enumerate(zip(keys, chunk, strict=True)):
            if b in starts:
                state = {k: v[b].clone() for k, v in states.items()}  # a view would save the whole batch
                self.pending[key] = Unit(item, point, images[b], y_img[b], state, exact.get(b))
            unit = self.pending[key]
            unit.draws.append(Draw(draw, x_host[b], diverged_at[b], {k: v[b] for k, v in scores.items()}))
            unit.seconds += seconds
            if len(unit.draws) == self.samples:
                self.record(self.pending.pop(key), len(sampler.timesteps(self.schedule)))
        return to_unit(x_host)

    def record(self, unit: Unit, nfe: int) -> None:
        """Write one (image, point) row, its pictures and operator, from its draws."""
        item, point = unit.item, unit.point
        key = self.row_key(item, point)
        x_hat = to_unit(unit.first.x)
        mean = [to_unit(unit.stacked().mean(0))] if self.samples > 1 else []
        panel = point.recorder.save_panel(key, [unit.measurement, x_hat, *mean, unit.truth])
        reconstruction = point.recorder.save_reconstruction(key, x_hat)
        operator = point.recorder.save_operator(key, unit.state)
        diverged = unit.diverged_at
        metrics = {k: (float("nan") if diverged is not None else v) for k, v in unit.first.scores.items()}
        if self.samples > 1 and diverged is None:
            gen = torch.Generator().manual_seed(batch.stream_seed(point.values["seed"], item.index, "posterior"))
            metrics |= set_scores(unit, lambda x, ref: self.metrics(x.to(self.device), ref.to(self.device)), gen)
        row = self.base_row(item, point) | {
            "status": "ok" if diverged is None else "diverged",
            "diverged_step": diverged,
            "metrics": metrics,
            "samples": self.samples,
            "nfe": nfe,
            "seconds": unit.seconds,
            "image": panel,
            "reconstruction": reconstruction,
            "operator": operator,
        }
        point.recorder.append(row)
        point.logger.log_row(row, point.recorder.dir / panel)

    def base_row(self, item: Item, point: Point) -> dict:
        params = {}
        for group in ("schedule", "physics", "denoiser", "sampler"):
            params.update(flatten(self.spec[group], group + "."))
        params.update(point.values)
        return {
            "key": self.row_key(item, point),
            "config_id": self.config_id,
            "index": item.index,
            "source": item.source,
            "point": dict(point.values),
            "seed": point.values["seed"],
            "params": params,
            "prior": getattr(self.denoiser, "provenance", None),
        }

    def summarize(self, point: Point, status: str, wall_time: float) -> dict:
        rows = point.recorder.rows()
        return {
            "status": status,
            **counts(rows),
            "metrics": aggregate(rows) | self.set_metrics(point, rows, status),
            "metric_weights": self.metric_weights,
            "point": point.values,
            "overrides": point.overrides,
            "wall_time_s": wall_time,
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "versions": {"dps_exp": dps_exp.__version__, "torch": torch.__version__},
            "prior": getattr(self.denoiser, "provenance", None),
            "config": point.config,
        }

    def set_metrics(self, point: Point, rows: Sequence[Mapping], status: str) -> dict:
        """Metrics over a point's whole set (FID), computed from the reconstructions on disk and the ground truth
        from the data source, so a resumed run scores every image, not only those of its last session."""
        if "fid" not in self.metrics.names:
            return {}
        if status != "complete":
            ok = sum(r.get("status") == "ok" for r in rows)
            return {"fid": {"value": None, "n": ok, "reason": f"the run is {status}: FID needs the whole set"}}

        def truth(row: Mapping) -> Tensor:
            return self.data.load(Item(row["index"], row["source"]))

        rows = [{**r, "dir": point.recorder.dir} for r in rows]
        return {"fid": fid_from_disk(rows, self.spec, self.device, truth)}
