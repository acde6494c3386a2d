"""What a run records: a row per (image, sweep point) with its pictures and operator, and a summary per point
with the set-level metrics, written through the point's recorder and mirrored by its logger."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

import dps_exp
from dps_exp import batch as streams
from dps_exp.analysis.report import set_scores_from_disk
from dps_exp.data.base import DataSource, Item
from dps_exp.metrics.image import Metrics
from dps_exp.run.draws import Unit, set_scores
from dps_exp.run.engine import to_unit
from dps_exp.run.planner import row_key
from dps_exp.run.points import Point, flatten
from dps_exp.run.recorder import RecordError, aggregate, counts
from dps_exp.run.settings import Identity
from dps_exp.run.signals import signals_held

log = logging.getLogger(__name__)


class Rows:
    """Makes and writes a run's rows and summaries. `spec`: the resolved config; `identity`: what its results
    depend on; `provenance`: the prior's weights; `samples`: posterior draws per measurement; `metrics`, `data`
    and `device` score the draws as a set and the set-level metrics (FID) from disk."""

    def __init__(
        self,
        spec: Mapping,
        identity: Identity,
        provenance: dict | None,
        samples: int,
        metrics: Metrics,
        metric_weights: Mapping,
        data: DataSource,
        device: torch.device,
    ):
        self.spec, self.identity, self.provenance, self.samples = spec, identity, provenance, samples
        self.metrics, self.metric_weights, self.data, self.device = metrics, metric_weights, data, device
        self.params = flatten(identity.config)  # the science groups, the data (less batching), the metrics

    def base(self, item: Item, point: Point) -> dict:
        return {
            "key": row_key(item, point),
            "config_id": self.identity.id,
            "settings": self.identity.settings,
            "index": item.index,
            "source": item.source,
            "point": dict(point.values),
            "seed": point.values["seed"],
            "params": self.params | point.values,
            "prior": self.provenance,
        }

    def unreadable(self, item: Item, point: Point, error: str) -> None:
        point.recorder.append(self.base(item, point) | {"status": "unreadable", "error": error})

    def record(self, unit: Unit, nfe: int) -> None:
        """Write one (image, point) row, its pictures and operator, from its draws."""
        item, point = unit.item, unit.point
        key = row_key(item, point)
        x_hat = to_unit(unit.first.x)
        mean = [to_unit(unit.stacked().mean(0))] if self.samples > 1 else []
        panel = point.recorder.save_panel(key, [unit.measurement, x_hat, *mean, unit.truth])
        reconstruction = point.recorder.save_reconstruction(key, x_hat)
        operator = point.recorder.save_operator(key, unit.state)
        diverged = unit.diverged_at
        metrics = {k: (float("nan") if diverged is not None else v) for k, v in unit.first.scores.items()}
        if self.samples > 1 and diverged is None:
            gen = torch.Generator().manual_seed(streams.stream_seed(point.values["seed"], item.index, "posterior"))
            metrics |= set_scores(unit, self.score_draws, gen)
        row = self.base(item, point) | {
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

    def score_draws(self, x: Tensor, ref: Tensor) -> dict[str, Tensor]:
        return self.metrics(x.to(self.device), ref.to(self.device))

    def summary(self, point: Point, status: str, wall_time: float) -> dict[str, Any]:
        rows = point.recorder.rows()
        return {
            "status": status,
            **counts(rows),
            "metrics": aggregate(rows) | self.left_out() | self.set_level(point, rows, status),
            "metric_weights": self.metric_weights,
            "point": point.values,
            "overrides": point.overrides,
            "wall_time_s": wall_time,
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "versions": {"dps_exp": dps_exp.__version__, "torch": torch.__version__},
            "settings": self.identity.settings,
            "prior": self.provenance,
            "config": point.config,
        }

    def finish(
        self, points: Sequence[Point], status: str, wall_time: float, extra: Mapping | None = None
    ) -> tuple[list[dict], int | None]:
        """Each point's summary and W&B run, all written even if a signal arrives meanwhile; returns the summaries
        and that signal, if one came (the caller decides: a complete run is complete, an unfinished one is
        stopping already). `extra` is added to each summary. Each point's directory is released."""
        summaries = []
        with signals_held(reraise=False) as held:
            for point in points:
                summary = self.summary(point, status, wall_time) | dict(extra or {})
                try:
                    point.recorder.write_summary(summary)
                except RecordError as err:
                    if status == "complete":
                        raise
                    log.error("%s", err)  # the error that stopped the run is the one to report
                point.logger.finish(summary, point.recorder.rows())
                point.recorder.release()
                summaries.append(summary)
        return summaries, (held.caught[0] if held.caught else None)

    def left_out(self) -> dict[str, dict]:
        """The default metrics left out for a missing backbone: {name: {value: None, reason}}."""
        return {name: {"value": None, "reason": reason} for name, reason in self.metrics.left_out.items()}

    def set_level(self, point: Point, rows: Sequence[Mapping], status: str) -> dict:
        """Metrics over a point's whole set (FID), computed from the reconstructions on disk and the ground truth
        from the data source, so a resumed run scores every image, not only those of its last session."""
        if not self.metrics.set_level:
            return {}
        if status != "complete":
            ok = sum(r.get("status") == "ok" for r in rows)
            reason = f"the run is {status}: a set-level metric needs the whole set"
            return {name: {"value": None, "n": ok, "reason": reason} for name in self.metrics.set_level}

        def truth(row: Mapping) -> Tensor:
            return self.data.load(Item(row["index"], row["source"]))

        rows = [{**r, "dir": point.recorder.dir} for r in rows]
        return set_scores_from_disk(rows, self.spec, self.device, truth)
