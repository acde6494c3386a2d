"""The Run: one job, orchestrated. It builds the parts from the validated config, plans the (image, sweep point,
draw) jobs that remain, hands batches to the engine (measure → sample → score) and their results to the rows
(files and loggers); everything else lives in those parts."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor
from tqdm.auto import tqdm

from dps_exp.config import build, resolve
from dps_exp.data.base import DataSource
from dps_exp.denoisers.base import Denoiser
from dps_exp.errors import DataError
from dps_exp.metrics.image import Metrics
from dps_exp.run.acceleration import BatchOutOfMemory, halve_batch, network_parameters, resolve_speed
from dps_exp.run.devices import layout_advice, resolve_device
from dps_exp.run.draws import Collector
from dps_exp.run.engine import Batch, BatchResult, Engine, StreamJob, to_unit
from dps_exp.run.planner import Job, claim, pending, row_key
from dps_exp.run.points import expand, make_points, point_id
from dps_exp.run.rows import Rows
from dps_exp.run.settings import Identity, per_sample_of, settings_of, validate
from dps_exp.run.signals import signals_held
from dps_exp.run.speed import Workload

log = logging.getLogger(__name__)


class Run:
    """Every (image, sweep point) pair of `data` × points, each point recorded in its directory.

    `out_dir` is the job's directory; `sweep_dir` the multirun's (for points packed by the sweeper);
    `overrides` the job's command-line overrides (to name points as a sequential multirun would); `job` the
    Hydra job's task config (unresolved) and Hydra config, from which listed points write their `.hydra/`.
    """

    def __init__(self, spec: Mapping, out_dir: Path, sweep_dir: Path | None = None, overrides: Sequence[str] = (),
                 job: tuple[DictConfig, DictConfig] | None = None):  # fmt: skip
        validate(spec)
        self.spec, self.settings, self.per_sample = spec, settings_of(spec), per_sample_of(spec)
        self.device, self._gpu_claim = resolve_device(self.settings.device, sweep_dir)
        self.schedule = build(spec["schedule"]).to(self.device)
        self.data: DataSource = build(spec["data"])
        self.metrics: Metrics = build(spec["metrics"])
        # a missing LPIPS/FID backbone stops the run before any work, or leaves a default metric out: before the
        # identity below records the metrics actually scored
        metric_weights = self.metrics.check(required=[self.settings.optimized_metric])
        self.prior: Denoiser = build(spec["denoiser"], schedule=self.schedule)
        self.prior.to(self.device).eval().requires_grad_(False)
        self.engine = Engine(spec, self.schedule, self.prior, self.metrics, self.device, self.settings.progress)
        shape, points = (self.data.channels, self.data.size, self.data.size), expand(spec, self.per_sample)
        self.engine.check(shape, points[0])
        self.workload = Workload(len(self.data.items()) * len(points) * self.settings.samples,
                                 max(self.engine.lengths(points)), shape, network_parameters(self.prior),
                                 point_id(spec["denoiser"]))  # fmt: skip
        self.speed = resolve_speed(self.settings.precision, self.settings.compile, self.settings.channels_last,
                                   self.data.batch_size, self.prior, self.device, self.workload)  # fmt: skip
        log.info("%s", self.speed.line(self.device.type))
        if advice := layout_advice(self.device, self.speed.channels_last, bool(self.speed.compile)):
            log.warning(advice)
        self.identity = Identity(spec, self.per_sample, self.device.type, self.metrics.per_image,
                                 self.speed.result_settings())  # fmt: skip
        self.rows = Rows(spec, self.identity, self.prior.provenance, self.settings.samples, self.metrics,
                         metric_weights, self.data, self.device)  # fmt: skip
        self.points = make_points(spec, self.per_sample, Path(out_dir), sweep_dir, overrides, self.settings.sweep_jobs)
        claim(self.points, self.identity, self.data.items(), job)
        self.collector = Collector(self.settings.samples)
        self.late_signal: int | None = None
        """A signal that arrived while the summaries of a complete run were being written."""

    @classmethod
    def from_config(cls, cfg: DictConfig, out_dir: Path, hydra: DictConfig | None = None, **kwargs: Any) -> Run:
        """A Run of a Hydra job's config (`hydra`: its Hydra config, so that packed points write its files)."""
        return cls(resolve(cfg), Path(out_dir), job=(cfg, hydra) if hydra is not None else None, **kwargs)

    def execute(self) -> list[dict]:
        """Run every job not yet recorded; write each point's summary; return the summaries."""
        start = time.perf_counter()
        items = self.data.items()
        jobs = pending(items, self.points, self.settings.samples)
        if not items:  # more shards than images: this one finishes with nothing to do
            log.warning("this shard (data.shard=%s of data.num_shards=%s) holds no image: nothing to run",
                        self.data.shard, self.data.num_shards)  # fmt: skip
        for point in self.points:
            point.logger.start(point.config, point.recorder.dir, point.name)
            point.recorder.write_image_list([item.source for item in items])
        status = "failed"
        try:
            with tqdm(total=len(jobs), desc="images", unit="img", disable=not self.settings.progress) as bar:
                if self.engine.continuous([p.values for p in self.points]):
                    self.stream(jobs, bar)
                else:
                    first = 0
                    while first < len(jobs):
                        chunk = jobs[first : first + self.speed.batch_size]
                        try:
                            self.run_batch(chunk)
                        except BatchOutOfMemory as err:  # nothing of the chunk is recorded yet: run it in halves
                            halve_batch(self.speed, self.workload, self.device, err)
                            continue
                        first += len(chunk)
                        bar.update(len(chunk))
            status = "complete"
        except KeyboardInterrupt:
            status = "interrupted"
            log.error("interrupted: finished images are recorded; to continue, run the same command with "
                      "resume=true (or into this directory)")  # fmt: skip
            raise
        finally:
            summaries, self.late_signal = self.rows.finish(self.points, status, time.perf_counter() - start,
                                                           extra={"speed": self.speed.record()})  # fmt: skip
            if self._gpu_claim is not None:
                self._gpu_claim.close()
        return summaries

    def load(self, chunk: Sequence[Job]) -> tuple[list[Job], Tensor | None]:
        """Load the chunk's images; unreadable ones are recorded by name (once, not per draw) and left out."""
        kept, images, cache = [], [], {}
        for item, point, draw in chunk:
            try:
                if item.index not in cache:
                    cache[item.index] = self.data.load(item)
            except DataError as err:
                if draw == 0:
                    log.error("%s", err)
                    self.rows.unreadable(item, point, str(err))
                continue
            kept.append((item, point, draw))
            images.append(cache[item.index])
        return kept, (torch.stack(images) if images else None)

    def run_batch(self, chunk: Sequence[Job]) -> Tensor | None:
        """Measure, sample and score one batch, recording each (image, point) once its draws are all in;
        returns the reconstructions (B, C, H, W) in [0, 1]."""
        chunk, images = self.load(chunk)
        if not chunk:
            return None
        starts = self.collector.starts([row_key(item, point) for item, point, _ in chunk])
        values = {k: [point.values[k] for _, point, _ in chunk] for k in self.per_sample}
        batch = Batch(images, values, [item.index for item, _, _ in chunk], [draw for *_, draw in chunk])
        out_of_memory = None
        try:
            result = self.engine(batch, exact_rows=starts if self.settings.samples > 1 else ())
        except torch.OutOfMemoryError as err:  # before anything of the batch is recorded: it may be run in halves
            out_of_memory = str(err)
        if out_of_memory is not None:  # raised out here, so the error's frames (and their tensors) are freed
            raise BatchOutOfMemory(len(chunk), out_of_memory)
        self.collect(chunk, images, result)
        return to_unit(result.x)

    def stream(self, jobs: Sequence[Job], bar: tqdm) -> None:
        """Continuous batching (points whose chains differ in length): the engine keeps `data.batch_size` slots
        full; each sample is recorded as it ends, so rows arrive in the order samples finish."""
        opened: set[str] = set()
        admitted: dict[int, tuple[Job, Tensor]] = {}

        def admissions() -> Iterator[StreamJob]:
            for token, job in enumerate(jobs):
                kept, images = self.load([job])
                if not kept:
                    bar.update(1)
                    continue
                item, point, draw = job
                key = row_key(item, point)
                values = {k: point.values[k] for k in self.per_sample}
                starter = self.settings.samples > 1 and key not in opened  # its exact posterior serves the unit
                opened.add(key)
                admitted[token] = job, images[0]
                yield StreamJob(token, images[0], values, item.index, draw, exact=starter)

        for token, result in self.engine.stream(admissions(), self.speed.batch_size):
            job, truth = admitted.pop(token)
            self.collect([job], truth[None], result)
            bar.update(1)

    def collect(self, jobs: Sequence[Job], images: Tensor, result: BatchResult) -> None:
        """Hand each sample's draw to its (image, point) unit; record the units that are complete."""
        with signals_held():  # a result computed is a result recorded, then the signal stops the run
            for unit, nfe in self.collector.take([row_key(it, p) for it, p, _ in jobs], list(jobs), images, result):
                self.rows.record(unit, nfe)
