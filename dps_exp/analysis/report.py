"""Collecting runs from disk into tables and plots (the sweep report and the shard merge use this)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from torch import Tensor

from dps_exp.data.images import load_image
from dps_exp.errors import UserError
from dps_exp.metrics.image import Metrics
from dps_exp.run.recorder import RESULTS, SUMMARY, aggregate, read_results


def run_dirs(root: Path) -> list[Path]:
    """Every directory under `root` (itself included) that holds a results.jsonl, sorted."""
    root = Path(root)
    found = [p.parent for p in root.rglob(RESULTS)]
    return sorted(set(found), key=lambda p: (len(p.parts), str(p)))


def collect(dirs: Iterable[Path]) -> list[dict]:
    """One record per run: its directory, hyperparameters (`params` of its rows), rows and aggregates."""
    runs = []
    for d in dirs:
        rows = read_results(Path(d) / RESULTS)
        if not rows:
            continue
        summary = json.loads((Path(d) / SUMMARY).read_text()) if (Path(d) / SUMMARY).exists() else {}
        params = {k: v for k, v in rows[0].get("params", {}).items() if not isinstance(v, list | dict)}
        runs.append({"dir": str(d), "params": params, "rows": rows, "metrics": aggregate(rows), "summary": summary})
    return runs


def set_scores_from_disk(
    rows: Sequence[Mapping],
    config: Mapping,
    device: str = "cpu",
    truth: Callable[[Mapping], Tensor] | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, dict]:
    """The set-level metrics (`names`, by default those of the recorded `config`'s metrics: FID) over the ok
    rows of runs with that config (its data size, its metrics' settings), from their saved reconstructions
    (`reconstruction`, relative to the row's `dir` or absolute) and the ground truth: `truth(row)`, by default
    the row's `source` read at the data size. What stops one (missing weights or files) becomes its `reason`."""
    node = {k: v for k, v in config.get("metrics", {}).items() if k != "_target_"}
    metrics = Metrics(**node)
    names = metrics.set_level if names is None else list(names)
    ok = [r for r in rows if r.get("status") == "ok"]
    paths = [Path(r.get("dir", ".")) / r["reconstruction"] for r in ok if r.get("reconstruction")]
    missing = [str(p) for p in paths if not p.is_file()]
    if len(paths) < len(ok):
        reason = "the results record no reconstruction images"
    elif missing:
        reason = f"{len(missing)} of {len(ok)} reconstructions are not on disk (e.g. {missing[0]})"
    else:
        reason = None
    size = config["data"]["size"]
    truth = truth or (lambda row: load_image(Path(row["source"]), size))
    pairs = [(p, partial(truth, r)) for p, r in zip(paths, ok, strict=True)] if reason is None else []
    scores = {}
    for name in names:
        try:
            scores[name] = metrics.over_set(name, pairs, device) if reason is None else None
        except UserError as err:  # missing backbone weights, a moved source image
            scores[name] = {"value": None, "n": len(ok), "reason": str(err)}
        scores[name] = scores[name] or {"value": None, "n": len(ok), "reason": reason}
    return scores


def fid_from_disk(rows: Sequence[Mapping], config: Mapping, device: str = "cpu") -> dict:
    """FID alone (the paper's tables have an FID column), as `set_scores_from_disk` scores it."""
    return set_scores_from_disk(rows, config, device, names=["fid"])["fid"]


def varying(runs: Sequence[Mapping]) -> list[str]:
    """The hyperparameters that take more than one value across the runs, in a stable order; a key that only
    some runs have (another operator's, in a sweep over `physics=...`) varies too."""
    keys = dict.fromkeys(k for run in runs for k in run["params"])
    return [k for k in keys if len({json.dumps(run["params"].get(k)) for run in runs}) > 1]


def table(runs: Sequence[Mapping], metrics: Sequence[str] | None = None) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows: the varying hyperparameters, then mean, std and n of each metric."""
    keys = varying(runs)
    metrics = metrics or sorted({m for run in runs for m in run["metrics"]})
    columns = ["run", *keys] + [f"{m}_{s}" for m in metrics for s in ("mean", "std", "n")]
    rows, root = [], os.path.commonpath([run["dir"] for run in runs]) if len(runs) > 1 else None
    for run in runs:
        name = os.path.relpath(run["dir"], root) if root else Path(run["dir"]).name  # `3/point-1`, not `point-1`
        row = [name, *(run["params"].get(k) for k in keys)]
        for m in metrics:
            agg = run["metrics"].get(m, {})
            row += [agg.get("mean"), agg.get("std"), agg.get("n")]
        rows.append(row)
    return columns, rows


def to_csv(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


def to_markdown(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    def cell(v):
        return "–" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def shard_gap(configs: Sequence[Mapping]) -> str | None:
    """Why the runs are not the shards 0 … n−1 of one `data.num_shards` = n (None when they are). A run whose
    data node has no shard keys is the whole set (shard 0 of 1); a run with no recorded config is not counted."""
    data = [c.get("data") or {} for c in configs if c]
    totals = sorted({d.get("num_shards", 1) for d in data})
    if len(totals) > 1:
        return f"the runs split the data differently (data.num_shards = {', '.join(map(str, totals))})"
    missing = sorted(set(range(totals[0])) - {d.get("shard", 0) for d in data}) if totals else []
    if missing:
        shards = ", ".join(map(str, missing))
        return f"shard {shards} of data.num_shards={totals[0]} not among the runs: the merged set is partial"
    return None
