"""Where results go: files in the run directory (the source of truth) and, mirrored, Weights & Biases."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import statistics
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from dps_exp.errors import UserError

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
IMAGE_LIST = "images.txt"


def _jsonable(value: Any) -> Any:
    """Floats that JSON cannot hold (NaN, ±inf) become null: a diverged sample has no score."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def aggregate(rows: Sequence[Mapping]) -> dict[str, dict[str, float]]:
    """Mean, std (sample), min, max and count of every metric over the rows whose status is ok."""
    values: dict[str, list[float]] = {}
    for row in rows:
        if row.get("status") != "ok":
            continue
        for name, value in row.get("metrics", {}).items():
            if isinstance(value, int | float) and math.isfinite(value):
                values.setdefault(name, []).append(float(value))
    return {
        name: {
            "mean": statistics.fmean(v),
            "std": statistics.stdev(v) if len(v) > 1 else 0.0,
            "min": min(v),
            "max": max(v),
            "n": len(v),
        }
        for name, v in values.items()
    }


def counts(rows: Sequence[Mapping]) -> dict[str, int]:
    return {
        "rows": len(rows),
        "ok": sum(r.get("status") == "ok" for r in rows),
        "diverged": sum(r.get("status") == "diverged" for r in rows),
        "unreadable": sum(r.get("status") == "unreadable" for r in rows),
    }


@contextlib.contextmanager
def signals_held():
    """Ctrl-C and SIGTERM wait for the block (a run's summaries and W&B runs being written), then stop the
    process as they would have: a second signal must not leave some points without their summary."""
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set from there
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if caught:
        raise KeyboardInterrupt(caught[0])


def write_json(path: Path, data: Mapping) -> None:
    """Write atomically, so an interrupted run never leaves half a summary."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(dict(data)), indent=2, default=str))
    os.replace(tmp, path)


def read_results(path: Path) -> list[dict]:
    """Every complete line of a results.jsonl; a torn last line (a killed run) is ignored, and a later row of
    a key replaces an earlier one (an unreadable image, retried once its file was mended)."""
    if not path.exists():
        return []
    rows: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows.pop(row["key"], None)
        rows[row["key"]] = row
    return list(rows.values())


class Recorder:
    """Writes one run's results into its directory:

    results.jsonl  one line per image × sweep point, appended and flushed as each finishes
    images/        a PNG panel per line (measurement | reconstruction | ground truth), and the reconstruction
                   alone as an 8-bit PNG (what FID is computed from)
    images.txt     the ordered list of the job's images (their sources)
    operators/     the drawn operator of each line (masks, kernels) as a tensor file and a PNG per mask or kernel
    summary.json   aggregates, the resolved config, wall time, device
    """

    def __init__(self, out_dir: Path):
        self.dir = Path(out_dir)
        for sub in ("images", "operators"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.results_path = self.dir / RESULTS
        self._drop_torn_line()

    def _drop_torn_line(self) -> None:
        """A run killed mid-write can leave a partial last line; cut it so appends start clean."""
        if not self.results_path.exists():
            return
        data = self.results_path.read_bytes()
        if data and not data.endswith(b"\n"):
            self.results_path.write_bytes(data[: data.rfind(b"\n") + 1])

    def rows(self) -> list[dict]:
        return read_results(self.results_path)

    def append(self, row: Mapping) -> None:
        line = json.dumps(_jsonable(dict(row)), default=str) + "\n"
        with self.results_path.open("a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def save_panel(self, key: str, panels: Sequence[Tensor]) -> str:
        """Save [0, 1] images (3, H, W) side by side; returns the path relative to the run directory."""
        rel = f"images/{key}.png"
        save_image(make_grid(list(panels), nrow=len(panels), padding=2, pad_value=1.0), self.dir / rel)
        return rel

    def save_reconstruction(self, key: str, x: Tensor) -> str:
        """Save a [0, 1] image (3, H, W) on its own as an 8-bit PNG; returns the path relative to the run directory."""
        rel = f"images/{key}_recon.png"
        save_image(x, self.dir / rel)
        return rel

    def write_image_list(self, sources: Sequence[str]) -> None:
        (self.dir / IMAGE_LIST).write_text("".join(f"{s}\n" for s in sources))

    def save_operator(self, key: str, state: Mapping[str, Tensor]) -> str | None:
        """Save the tensors that pin down one sample's operator; each 2-D or (C, H, W) one (a mask, a kernel)
        also as a PNG for a look, scaled so that its largest value is white."""
        if not state:
            return None
        rel = f"operators/{key}.pt"
        torch.save({k: v.detach().cpu() for k, v in state.items()}, self.dir / rel)
        for name, v in state.items():
            if v.ndim in (2, 3):
                v = v.detach().cpu().float()
                save_image(v / v.max().clamp_min(1e-12), self.dir / f"operators/{key}_{name}.png")
        return rel

    def write_summary(self, summary: Mapping) -> None:
        write_json(self.dir / SUMMARY, summary)


class Logger:
    """Mirrors a run somewhere besides the disk. This base class mirrors nothing (`logger=none`)."""

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
