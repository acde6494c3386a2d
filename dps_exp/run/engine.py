"""The batch engine: measure → sample → score for a batch of (image, sweep point, draw) samples.

Pure: no disk, no W&B, no global randomness. Each sample's operator, measurement noise and sampler noise come
from its own streams, seeded from (seed, image index, stream name), so a sample's result is the same alone or
in any batch. The Run, the scripts and the benchmarks all go through `Engine`, so their numbers agree draw for
draw. Images are [0, 1] outside and [-1, 1] inside; `to_signed` and `to_unit` are the only conversions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dps_exp import batch as streams
from dps_exp.config import build
from dps_exp.denoisers.base import Denoiser
from dps_exp.denoisers.exact import Mixture
from dps_exp.errors import ConfigError
from dps_exp.metrics.image import Metrics
from dps_exp.physics.base import Physics
from dps_exp.run.draws import ExactPosteriors
from dps_exp.run.points import with_values
from dps_exp.samplers.base import Sampler
from dps_exp.schedule import Schedule


def to_signed(x: Tensor) -> Tensor:
    """[0, 1] → [-1, 1], where the prior and the physics live."""
    return x * 2.0 - 1.0


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] → [0, 1], clipped, for metrics and pictures."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def sampler_stream(draw: int) -> str:
    """The random stream of posterior draw `draw`: draw 0 uses the stream of a single-draw run."""
    return "sampler" if draw == 0 else f"sampler/{draw}"


@dataclass
class Batch:
    """What the engine is given: B samples."""

    images: Tensor
    """Ground truth (B, C, H, W) in [0, 1]."""
    values: Mapping[str, Sequence[Any]]
    """Each per-sample key's value for each sample (`seed`, `sampler.eta`, …), B each."""
    indices: Sequence[int]
    """Each sample's image index (its streams derive from it)."""
    draws: Sequence[int]
    """Each sample's posterior draw number (its sampler stream)."""


@dataclass
class BatchResult:
    """What the engine returns, on the CPU."""

    x: Tensor
    """Reconstructions (B, C, H, W) on [-1, 1], not clipped."""
    diverged_at: list[int]
    """The step at which each sample stopped being finite, or −1."""
    nfe: list[int]
    """Network evaluations of each sample."""
    scores: dict[str, list[float]]
    """Each per-image metric, B values."""
    measurement: Tensor
    """The measurements as [0, 1] pictures (B, C, H', W')."""
    state: dict[str, Tensor]
    """The drawn operators' tensors, batch-first."""
    exact: dict[int, Mixture]
    """Exact posteriors of the rows asked for, where the prior, operator and noise have one."""
    seconds: float
    """Wall time of the batch."""


class Engine:
    """Measures, samples and scores batches for one configuration (`spec`: a resolved, validated config)."""

    def __init__(
        self,
        spec: Mapping,
        schedule: Schedule,
        prior: Denoiser,
        metrics: Metrics,
        device: torch.device,
        progress: bool = False,
    ):
        self.spec, self.schedule, self.prior, self.metrics = spec, schedule, prior, metrics
        self.device, self.progress = device, progress
        self.exact_posteriors = ExactPosteriors(prior)

    def build(self, group: str, values: Mapping[str, Sequence[Any]]) -> Any:
        """Instantiate a group for one batch; a per-sample key whose values differ becomes a (B,) tensor."""
        merged = {}
        for key, vals in values.items():
            if key.startswith(group + "."):
                same = all(v == vals[0] for v in vals)
                merged[key] = vals[0] if same else torch.tensor(vals, dtype=torch.float64)
        return build(with_values(self.spec[group], group, merged))

    def check(self, shape: Sequence[int], values: Mapping[str, Any]) -> None:
        """Stop before any work when images of `shape` (C, H, W) cannot go through this configuration at the
        per-sample `values` of one point: a UNet that cannot halve them, a box larger than the image, a blur's
        padding wider than it (one operator is drawn and applied to a blank image, on the CPU), or a sampler
        that cannot work with this prior and operator."""
        self.prior.check_shape(shape)
        single = {k: [v] for k, v in values.items()}
        physics: Physics = self.build("physics", single)
        physics.draw((1, *shape), streams.generators([0], [0], "check"), torch.device("cpu"))
        try:
            physics.A(torch.zeros(1, *shape))
        except RuntimeError as err:
            raise ConfigError(
                f"{type(physics).__name__} cannot measure {tuple(shape)} images: {err}".splitlines()[0]
            ) from None
        self.build("sampler", single).check(self.prior, physics)

    def measure(self, x: Tensor, batch: Batch) -> tuple[Physics, Tensor]:
        """Draw each sample's operator and measure x (B, C, H, W) on [-1, 1]."""
        seeds = batch.values["seed"]
        physics: Physics = self.build("physics", batch.values)
        physics.draw(x.shape, streams.generators(seeds, batch.indices, "operator"), x.device)
        return physics, physics.measure(x, streams.generators(seeds, batch.indices, "measurement"))

    def __call__(self, batch: Batch, exact_rows: Sequence[int] = ()) -> BatchResult:
        tic = time.perf_counter()
        truth = batch.images.to(self.device)
        x = to_signed(truth)
        physics, y = self.measure(x, batch)
        sampler: Sampler = self.build("sampler", batch.values)
        names = [sampler_stream(d) for d in batch.draws]
        gens = streams.generators(batch.values["seed"], batch.indices, names, self.device)
        result = sampler.sample(
            y, physics, self.prior, self.schedule, noise=lambda: streams.randn(x.shape, gens), progress=self.progress
        )
        scores = {k: v.cpu().tolist() for k, v in self.metrics(to_unit(result.x), truth).items()}
        return BatchResult(
            x=result.x.cpu(),
            diverged_at=result.diverged_at.cpu().tolist(),
            nfe=result.nfe if isinstance(result.nfe, list) else [result.nfe] * len(batch.indices),
            scores=scores,
            measurement=to_unit(physics.to_image(y)).cpu(),
            state={k: v.cpu() for k, v in physics.state().items()},
            exact=self.exact_posteriors(physics, y, x.shape[1:], list(exact_rows)),
            seconds=time.perf_counter() - tic,
        )

    def lengths(self, points: Sequence[Mapping[str, Any]]) -> list[int]:
        """Network evaluations per sample at each of these points (their per-sample values)."""
        return [self.sampler_at(values).length(self.schedule) for values in points]

    def sampler_at(self, values: Mapping[str, Any]) -> Sampler:
        """The sampler of one point."""
        return self.build("sampler", {k: [v] for k, v in values.items()})

    def continuous(self, points: Sequence[Mapping[str, Any]]) -> bool:
        """Whether samples of these points are batched continuously: the sampler can (it has a runner) and their
        chains differ in length, so a batch walked in step would idle its short ones."""
        return self.sampler_at(points[0]).continuous and len(set(self.lengths(points))) > 1

    def stream(self, jobs: Iterator[StreamJob], capacity: int) -> Iterator[tuple[object, BatchResult]]:
        """Continuous batching: `capacity` slots, filled from `jobs` as they free up; yields (token, result of that
        sample alone, a batch of one) as each sample ends. Each sample's seconds are its admission (measuring)
        plus its share of every network pass it took part in."""
        runner, resident, waiting = None, {}, iter(jobs)
        job = next(waiting, None)
        while job is not None or (runner is not None and runner.n):
            while job is not None and (runner is None or runner.n < capacity):
                tic = time.perf_counter()
                batch = Batch(job.image[None], {k: [v] for k, v in job.values.items()}, [job.index], [job.draw])
                truth = batch.images.to(self.device)
                physics, y = self.measure(to_signed(truth), batch)
                sampler: Sampler = self.build("sampler", batch.values)
                runner = runner or sampler.runner(self.schedule, self.prior, capacity, truth.shape[1:], self.device)
                gen = streams.generators([job.values["seed"]], [job.index], [sampler_stream(job.draw)], self.device)
                runner.admit(job.token, sampler, physics, y, gen[0])
                exact = self.exact_posteriors(physics, y, truth.shape[1:], [0] if job.exact else [])
                picture, state = to_unit(physics.to_image(y)).cpu(), {k: v.cpu() for k, v in physics.state().items()}
                resident[job.token] = Resident(truth, picture, state, exact, time.perf_counter() - tic)
                job = next(waiting, None)
            tic, n = time.perf_counter(), runner.n
            finished = runner.step()
            for sample in resident.values():
                sample.seconds += (time.perf_counter() - tic) / n
            for token, x, diverged_at, nfe in finished:
                sample = resident.pop(token)
                scores = {k: v.cpu().tolist() for k, v in self.metrics(to_unit(x[None]), sample.truth).items()}
                yield token, BatchResult(x[None].cpu(), [int(diverged_at)], [nfe], scores, sample.picture, sample.state,
                                         sample.exact, sample.seconds)  # fmt: skip


@dataclass
class StreamJob:
    """One sample for `Engine.stream`."""

    token: object
    """Handed back with its result."""
    image: Tensor
    """Ground truth (C, H, W) in [0, 1]."""
    values: Mapping[str, Any]
    """Its per-sample values (one each)."""
    index: int
    draw: int
    exact: bool = False
    """Whether to compute its exact posterior (the first draw of an (image, point) pair)."""


@dataclass
class Resident:
    """What the engine keeps of a sample while it walks."""

    truth: Tensor
    picture: Tensor
    state: dict[str, Tensor]
    exact: dict[int, Mixture]
    seconds: float = field(default=0.0)
