"""Loggers mirror a run somewhere besides the disk (the disk is the source of truth): none, or Weights & Biases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from dps_exp.errors import UserError


class Logger:
    """Mirrors a run somewhere besides the disk. This base class mirrors nothing (`logger=none`)."""

    group: str | None = None
    """The group of runs this one belongs to (a sweep's points share one)."""

    def start(self, config: Mapping, out_dir: Path, name: str) -> None:
        pass

    def log_row(self, row: Mapping, image: Path | None) -> None:
        pass

    def finish(self, summary: Mapping, rows: Sequence[Mapping]) -> None:
        pass


class WandbLogger(Logger):
    """Weights & Biases: config, per-image metrics and panels, a results table and the summary.

    mode: `offline` (default: needs no account or network; `wandb sync` uploads later), `online`, `disabled`;
    `dryrun`, W&B's older name for offline, is taken as offline (it may come from `$WANDB_MODE`).

    Each image's metrics are logged against its index (`define_metric(..., step_metric="index")`), so that runs
    over the same images line up in W&B's charts, whichever order or session scored them; the results table at
    the end has a row per image with its panel as an image column, to compare reconstructions across runs. A
    resumed run continues the same W&B run (the id kept in `wandb_run_id`, `resume="allow"`); offline, each
    session writes its own `wandb/offline-run-*` directory, and `wandb sync` uploads them in order of start
    into that one run.

    Args:
        mode: `offline` (no account or network needed; W&B's older `dryrun` is taken as offline), `online` or
            `disabled`; the option takes `$WANDB_MODE` when it is set
        project: W&B project
        entity: W&B entity (team or user)
        group: W&B group
        tags: W&B tags
        log_images: upload the PNG panels (with each image's metrics and in the results table)
    """

    def __init__(
        self,
        mode: Literal["offline", "online", "disabled", "dryrun"] = "offline",
        project: str = "dps-exp",
        entity: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        log_images: bool = True,
    ):
        self.mode = "offline" if mode == "dryrun" else mode
        self.project, self.entity, self.group = project, entity, group
        self.tags, self.log_images = list(tags), log_images
        self.run = None
        self.out_dir = Path(".")
        self.defined: set[str] = set()
        """The metrics given `index` as their step metric so far."""

    def start(self, config: Mapping, out_dir: Path, name: str) -> None:
        import wandb

        agent = "WANDB_SWEEP_ID" in os.environ  # under `wandb agent` the run is the agent's: no id of ours
        try:
            self.run = wandb.init(
                project=self.project,
                entity=self.entity,
                group=self.group,
                tags=self.tags,
                name=name,
                mode=self.mode,
                dir=str(out_dir),
                config=dict(config),
                id=None if agent else self.run_id(out_dir),
                resume=None if agent else "allow",
                reinit="create_new",  # a packed sweep job keeps one run per point open at once
            )
        except Exception as err:
            hint = "use logger.mode=offline (then `wandb sync`) or " if self.mode == "online" else "use "
            raise UserError(
                f"W&B could not start a {self.mode} run ({type(err).__name__}: {err}); {hint}logger=none. "
                "Results are written to disk either way."
            ) from err
        self.out_dir, self.defined = Path(out_dir), set()
        self.run.define_metric("index", hidden=True)  # the x axis, not a chart of its own

    @staticmethod
    def run_id(out_dir: Path) -> str:
        """The W&B run id of this directory, made once and kept, so a resumed run continues the same run."""
        path = Path(out_dir) / "wandb_run_id"
        if not path.exists():
            path.write_text(uuid.uuid4().hex[:12])
        return path.read_text().strip()

    def log_row(self, row: Mapping, image: Path | None) -> None:
        import wandb

        data = {k: v for k, v in row.get("metrics", {}).items() if v is not None}
        for name in data.keys() - self.defined:  # charted against the image index, not W&B's own step
            self.run.define_metric(name, step_metric="index")
            self.defined.add(name)
        if self.log_images and image is not None:
            data["panel"] = wandb.Image(str(image), caption=row["key"])
        self.run.log({"index": row["index"], **data})

    def finish(self, summary: Mapping, rows: Sequence[Mapping]) -> None:
        if rows:
            self.run.log({"results": self.results_table(rows)})
        for name, agg in summary.get("metrics", {}).items():
            for stat, value in agg.items():
                self.run.summary[f"{name}/{stat}"] = value
            if "mean" in agg:  # W&B would show the last image's value under the metric's own name
                self.run.summary[name] = agg["mean"]
        for key in ("status", "rows", "ok", "diverged", "unreadable", "wall_time_s"):
            self.run.summary[key] = summary.get(key)
        self.run.finish(exit_code=0 if summary.get("status") == "complete" else 1)  # W&B marks the others failed
        self.run = None

    def results_table(self, rows: Sequence[Mapping]):
        """A `wandb.Table` with a row per result: key, index, source, status, its panel (an image, unless
        `log_images` is off; None for an unreadable image or a panel no longer on disk) and its metrics."""
        import wandb

        metrics = list(dict.fromkeys(m for r in rows for m in r.get("metrics", {})))  # an unreadable row has none
        panel = ["panel"] if self.log_images else []
        table = wandb.Table(columns=["key", "index", "source", "status", *panel, *metrics])
        for r in rows:
            path = self.out_dir / r["image"] if r.get("image") else None
            image = [wandb.Image(str(path), caption=r["key"]) if path and path.is_file() else None]
            scores = [r.get("metrics", {}).get(m) for m in metrics]
            table.add_data(r["key"], r["index"], r["source"], r.get("status"), *(image if panel else []), *scores)
        return table
