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

    Args:
        mode: `offline` (no account or network needed; W&B's older `dryrun` is taken as offline), `online` or
            `disabled`; the option takes `$WANDB_MODE` when it is set
        project: W&B project
        entity: W&B entity (team or user)
        group: W&B group
        tags: W&B tags
        log_images: upload the PNG panels
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
        if self.log_images and image is not None:
            data["panel"] = wandb.Image(str(image), caption=row["key"])
        self.run.log({"index": row["index"], **data})

    def finish(self, summary: Mapping, rows: Sequence[Mapping]) -> None:
        import wandb

        if rows:
            metrics = dict.fromkeys(m for r in rows for m in r.get("metrics", {}))  # an unreadable row has none
            columns = ["key", "index", "source", "status", *metrics]
            table = wandb.Table(columns=columns)
            for r in rows:
                table.add_data(*[r.get(c, r.get("metrics", {}).get(c)) for c in columns])
            self.run.log({"results": table})
        for name, agg in summary.get("metrics", {}).items():
            for stat, value in agg.items():
                self.run.summary[f"{name}/{stat}"] = value
            if "mean" in agg:  # W&B would show the last image's value under the metric's own name
                self.run.summary[name] = agg["mean"]
        for key in ("status", "rows", "ok", "diverged", "unreadable", "wall_time_s"):
            self.run.summary[key] = summary.get(key)
        self.run.finish(exit_code=0 if summary.get("status") == "complete" else 1)  # W&B marks the others failed
        self.run = None
