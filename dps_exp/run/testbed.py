"""What the offline comparison scripts share: one configuration built as a run builds it, its images, and draws
through the run's engine, scored as a run scores them.

`scripts/posterior_testbed.py` (DPS against step size), `scripts/leaderboard.py` (every sampler on the
exact-posterior test beds) and `scripts/solver_table.py` (every sampler on the bundled photographs) build their
configurations with `Bed.build` and run image × draw batches with `Bed.draws`, so their numbers are those of
`python -m dps_exp.run` with the same overrides and `samples=N`. Pure, like the engine: no disk.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dps_exp.batch import stream_seed
from dps_exp.config import build
from dps_exp.data.base import DataSource
from dps_exp.denoisers.base import Denoiser
from dps_exp.denoisers.exact import Mixture
from dps_exp.metrics.posterior import posterior_metrics
from dps_exp.run.cli import compose
from dps_exp.run.engine import Batch, BatchResult, Engine, to_signed
from dps_exp.run.points import expand
from dps_exp.run.settings import per_sample_of, validate


def each(values: Mapping[str, Any], n: int) -> dict[str, list]:
    """Per-sample values for a batch of n samples that share them."""
    return {k: [v] * n for k, v in values.items()}


def numbers(text: str) -> list[float]:
    """argparse type: comma-separated numbers."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated numbers, e.g. 0.5,1,2") from None


def names(options: Sequence[str]):
    """argparse type: comma-separated names, each one of `options`."""

    def parse(text: str) -> list[str]:
        chosen = [v for v in text.split(",") if v]
        if bad := [v for v in chosen if v not in options]:
            raise argparse.ArgumentTypeError(f"{', '.join(bad)}: choose from {', '.join(options)}")
        return chosen

    return parse


def positive(text: str) -> int:
    """argparse type: a whole number ≥ 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number, at least 1")
    return int(text)


@dataclass
class Bed:
    """One configuration, built and checked as a run builds and checks its own, with its images loaded."""

    spec: Mapping
    prior: Denoiser
    data: DataSource
    engine: Engine
    values: dict[str, Any]
    """The per-sample values of its (first) point, one each."""
    truth: Tensor
    """The images (B, C, H, W) on the [0, 1] scale."""

    @classmethod
    def build(
        cls,
        overrides: Sequence[str],
        fixed: Mapping[str, Any] | None = None,
        check: bool = True,
        like: Bed | None = None,
    ) -> Bed:
        """Compose, validate and build the config of `overrides`, then (`check`) `Bed.check` it; per-sample keys in
        `fixed` are taken as given instead of from the config (lists the caller walks itself). `like`: a bed whose
        schedule, prior and images are reused where this config's are the same (building a prior can take longer
        than a short chain). UserError or HydraException for what cannot run."""
        spec = compose(list(overrides))
        validate(spec)
        fixed = dict(fixed or {})
        same = like is not None and all(spec[g] == like.spec[g] for g in ("schedule", "denoiser", "data"))
        if same:
            schedule, prior, data, truth = like.engine.schedule, like.prior, like.data, like.truth
        else:
            schedule = build(spec["schedule"])
            prior = build(spec["denoiser"], schedule=schedule).eval().requires_grad_(False)
            data = build(spec["data"])
            truth = torch.stack([data.load(it) for it in data.items()])
        values = expand(spec, [k for k in per_sample_of(spec) if k not in fixed])[0] | fixed
        engine = Engine(spec, schedule, prior, build(spec["metrics"]), torch.device("cpu"))
        bed = cls(spec, prior, data, engine, values, truth)
        if check:
            bed.check()
        return bed

    def check(self) -> None:
        """ConfigError when its images cannot go through this configuration (the engine's check: the prior's
        shapes, the operator's fit, and whether the sampler works with this prior and operator)."""
        self.engine.check(self.truth.shape[1:], self.values)

    @property
    def seed(self) -> int:
        return int(self.values["seed"])

    def measure(self):
        """(physics, y): every image's operator and measurement, drawn from its own streams as a run draws them."""
        B = self.truth.shape[0]
        return self.engine.measure(to_signed(self.truth), Batch(self.truth, each(self.values, B), range(B), [0] * B))

    def draws(self, samples: int, points: Sequence[Mapping[str, Any]] = ({},)) -> tuple[Tensor, BatchResult]:
        """`samples` draws of every image at each of `points` (per-sample values that replace the bed's own), in
        one batch of B × P × S rows (image, point, draw; the draws of each pair together), each draw from the
        stream a run with `samples=S` gives it. Returns the draws (B, P, S, C, H, W) on [-1, 1] and the engine's
        result (its per-row lists in that order)."""
        B, P, S = self.truth.shape[0], len(points), samples
        rows = [(b, z, s) for b in range(B) for z in range(P) for s in range(S)]
        values = [self.values | dict(points[z]) for _, z, _ in rows]
        per_row = {k: [v[k] for v in values] for k in values[0]}
        images = [b for b, _, _ in rows]
        result = self.engine(Batch(self.truth[images], per_row, images, [s for *_, s in rows]))
        return result.x.view(B, P, S, *self.truth.shape[1:]), result

    def score(self, xs: Tensor, exact: Mixture, b: int) -> dict[str, float]:
        """Image b's draws xs (S, C, H, W) against its exact posterior, with the random stream a run scores its
        sets with (dps_exp.metrics.posterior: mean_rmse, sliced_w2, coverage and their exact-sampler values)."""
        gen = torch.Generator().manual_seed(stream_seed(self.seed, b, "posterior"))
        m = posterior_metrics(xs[None], exact[b], to_signed(self.truth[b])[None], gen)
        return {k: v.item() for k, v in m.items()}
