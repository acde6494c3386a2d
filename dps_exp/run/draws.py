"""Several posterior draws per measurement (`samples=N`): collecting them and scoring them as a set.

All N draws of an (image, sweep point) pair share its operator and measurement (their random streams depend
on the seed and the image index only); draw s samples from its own stream, and draw 0's stream is the one a
single-draw run uses, so its result is the same whatever N is. When the prior has an exact posterior (the GMM
and the stationary Gaussian, with a linear operator and Gaussian noise), the draws are also scored against it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dps_exp.denoisers.exact import ExactPrior, Mixture, exact_posterior
from dps_exp.errors import ConfigError
from dps_exp.metrics.posterior import posterior_metrics
from dps_exp.physics.base import LinearPhysics, Physics

log = logging.getLogger(__name__)


@dataclass
class Draw:
    number: int
    x: Tensor
    """The sampler's output (C, H, W) on the [-1, 1] scale, not clipped, on the CPU."""
    diverged_at: int
    scores: dict[str, float]
    """This draw's per-image metrics."""


@dataclass
class Unit:
    """The draws of one (image, sweep point) pair, gathered until all N are in (they may span batches)."""

    item: Any
    point: Any
    truth: Tensor
    """Ground truth (C, H, W) on the [0, 1] scale."""
    measurement: Tensor
    """The measurement as a [0, 1] picture."""
    state: dict[str, Tensor]
    exact: Mixture | None
    draws: list[Draw] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def first(self) -> Draw:
        return min(self.draws, key=lambda d: d.number)

    @property
    def diverged_at(self) -> int | None:
        steps = [d.diverged_at for d in self.draws if d.diverged_at >= 0]
        return min(steps) if steps else None

    def stacked(self) -> Tensor:
        """(N, C, H, W), in draw order."""
        return torch.stack([d.x for d in sorted(self.draws, key=lambda d: d.number)])


class Collector:
    """Gathers each (image, point) pair's draws, which may span batches, until all N are in."""

    def __init__(self, samples: int):
        self.samples = samples
        self.pending: dict[str, Unit] = {}

    def starts(self, keys: list[str]) -> list[int]:
        """The batch rows that start a unit: the first row of each key not yet pending."""
        first: dict[str, int] = {}
        return [b for b, key in enumerate(keys) if key not in self.pending and first.setdefault(key, b) == b]

    def open(self, key: str, unit: Unit) -> None:
        self.pending[key] = unit

    def add(self, key: str, draw: Draw, seconds: float) -> Unit | None:
        """Add a draw; the unit, taken out, once it has all N."""
        unit = self.pending[key]
        unit.draws.append(draw)
        unit.seconds += seconds
        return self.pending.pop(key) if len(unit.draws) == self.samples else None

    def take(self, keys: list[str], jobs: list, images: Tensor, result) -> list[tuple[Unit, int]]:
        """Each sample of an engine result (`keys[b]`, `jobs[b]` = (item, point, draw), ground truth `images[b]`)
        to its unit; returns the units now complete, with their NFE. A unit opens with its first sample, and takes
        the exact posterior from whichever of its samples carries one."""
        complete = []
        for b, (key, (item, point, draw)) in enumerate(zip(keys, jobs, strict=True)):
            exact = result.exact.get(b)
            if key not in self.pending:
                state = {k: v[b].clone() for k, v in result.state.items()}  # a view would keep the whole batch
                self.open(key, Unit(item, point, images[b], result.measurement[b], state, exact))
            elif exact is not None:
                self.pending[key].exact = exact
            scores = {k: v[b] for k, v in result.scores.items()}
            draw_result = Draw(draw, result.x[b], result.diverged_at[b], scores)
            if unit := self.add(key, draw_result, result.seconds / len(jobs)):
                complete.append((unit, result.nfe[b]))
        return complete


class ExactPosteriors:
    """A run's exact posteriors, for the (image, point) units a batch starts; none where the prior, operator or
    noise has none (said once per run)."""

    def __init__(self, prior):
        self.prior, self.warned = prior, False

    def __call__(self, physics: Physics, y: Tensor, shape, rows: list[int]) -> dict[int, Mixture]:
        """{batch row: its posterior} for `rows`; empty when there is none."""
        if not rows or not isinstance(self.prior, ExactPrior):
            return {}
        if not isinstance(physics, LinearPhysics):
            reason = f"{type(physics).__name__} is not linear"
        else:
            try:
                posteriors = exact_posterior(self.prior, physics, y, shape=tuple(shape), rows=rows)
                return {b: posteriors[j] for j, b in enumerate(rows)}
            except ConfigError as err:
                reason = str(err)
        if not self.warned:
            log.warning("no exact posterior (%s): recording the draws' sample-mean scores only", reason)
            self.warned = True
        return {}


def set_scores(unit: Unit, score: Callable[[Tensor, Tensor], Mapping[str, Tensor]], generator) -> dict[str, float]:
    """Scores of the N draws as a set: the per-image metrics of their mean (`<name>_of_mean`) and, when the
    posterior is exact, its distances (`mean_rmse`, `sliced_w2`, `coverage` and what exact draws would get)."""
    draws = unit.stacked()
    mean = ((draws.mean(0) + 1) / 2).clamp(0, 1)
    out = {f"{k}_of_mean": float(v.reshape(-1)[0]) for k, v in score(mean[None], unit.truth[None]).items()}
    if unit.exact is not None:
        x_true = (unit.truth * 2 - 1)[None]
        scores = posterior_metrics(draws[None], unit.exact, x_true, generator)
        out |= {k: float(v[0]) for k, v in scores.items()}
    return out
