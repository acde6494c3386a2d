"""Merge runs of the same configuration (e.g. the shards of `data.shard=i data.num_shards=n`) into one.

    python scripts/merge_runs.py multirun/2026-11-27/12-00-00/{0,1,2,3} --out outputs/merged

Each argument is a run directory (one holding results.jsonl), not a sweep: pass a sweep's point directories.
Rows are concatenated in image order (a key present twice is kept once); runs of different configurations
(their `config_id`) or of different sweep points (η, step size, seed, ...) are refused, and a warning says when
the shards are not all of one `data.num_shards`. A shard that held no image (more shards than images) is a run
with no rows. Writes
OUT/results.jsonl and OUT/summary.json (OUT must not be one of the runs); images and operators stay where they
are, referenced by path. When the runs scored FID, it is recomputed over the merged set (a shard's FID is not a
part of the whole's): from the saved reconstructions, with the Inception weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from dps_exp.analysis.report import run_dirs, set_scores_from_disk, shard_gap
from dps_exp.run.points import canonical, point_id
from dps_exp.run.recorder import RESULTS, SUMMARY, aggregate, counts, read_results, write_json


def check_inputs(dirs: Sequence[Path], out: Path) -> None:
    """Stop on an argument that is not a run, and on an OUT that would overwrite one of the runs."""
    for d in dirs:
        if not d.exists():
            raise SystemExit(f"error: no such run directory: {d}")
        if (d / RESULTS).is_file() or (d / SUMMARY).is_file():  # an empty shard has a summary and no rows
            continue
        inside = run_dirs(d) if d.is_dir() else []
        if inside:
            shown = " ".join(map(str, inside[:4])) + (" ..." if len(inside) > 4 else "")
            raise SystemExit(f"error: {d} is a sweep, not a run: pass its point directories ({shown})")
        raise SystemExit(f"error: {d} holds no {RESULTS}: not a run directory")
    resolved = [d.resolve() for d in dirs]
    if out.resolve() in resolved:
        raise SystemExit(f"error: --out {out} is one of the runs: merging would overwrite its {RESULTS}")
    if twice := next((d for i, d in enumerate(dirs) if resolved[i] in resolved[:i]), None):
        raise SystemExit(f"error: {twice} is given twice")


def recorded_config(d: Path) -> dict:
    """The run's resolved config from its summary.json, else Hydra's copy (a run stopped before its summary)."""
    summary = json.loads((d / SUMMARY).read_text()) if (d / SUMMARY).exists() else {}
    hydra = d / ".hydra" / "config.yaml"
    return summary.get("config") or (yaml.safe_load(hydra.read_text()) if hydra.exists() else {})


def setting_difference(rows: Sequence[dict]) -> str | None:
    """`key = a and b` for the first recorded setting (precision, compile, device, the metrics scored, …) in
    which the rows differ, or None."""
    recorded = [r["settings"] for r in rows if isinstance(r.get("settings"), dict)]
    for key in dict.fromkeys(k for s in recorded for k in s):
        values = list(dict.fromkeys(json.dumps(s.get(key)) for s in recorded))
        if len(values) > 1:
            return f"{key} = {values[0]} and {values[1]}"
    return None


def merge(dirs: list[Path], out: Path) -> dict:
    rows, kept, config_ids, points = [], {}, set(), {}
    for d in dirs:
        for row in read_results(d / RESULTS):
            config_ids.add(row.get("config_id"))
            points.setdefault(point_id(row.get("point", {})), row.get("point", {}))
            rows.append(row)
            if row["key"] in kept:  # the same image and point in two runs (a shard beside its merge)
                first = kept[row["key"]]
                if (first.get("status"), first.get("metrics")) != (row.get("status"), row.get("metrics")):
                    raise SystemExit(
                        f"error: {row['key']} is in two runs with different results ({first['dir']} and {d}); "
                        "not merging"
                    )
                continue
            kept[row["key"]] = row | {"dir": str(d)}
    if len(config_ids) > 1:
        if differ := setting_difference(rows):
            raise SystemExit(f"error: the runs were made with different settings ({differ}); not merging")
        raise SystemExit(f"error: the runs hold different configurations ({sorted(map(str, config_ids))}); not merging")
    if len(points) > 1:
        a, b = list(points.values())[:2]
        differ = ", ".join(
            f"{k} = {a.get(k)} and {b.get(k)}" for k in {**a, **b} if canonical(a.get(k)) != canonical(b.get(k))
        )
        raise SystemExit(f"error: the runs hold different sweep points ({differ}); not merging")
    configs = [recorded_config(d) for d in dirs]
    if gap := shard_gap(configs):
        print(f"warning: {gap}", file=sys.stderr)
    rows = []
    for row in kept.values():
        d = Path(row.pop("dir"))
        for field in ("image", "reconstruction", "operator"):
            if row.get(field):
                row[field] = str((d / row[field]).resolve())
        rows.append(row)
    rows.sort(key=lambda r: (r["index"], r["key"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = configs[0]
    whole_set = set_scores_from_disk(rows, config)
    summary = {
        "status": "merged",
        **counts(rows),
        "metrics": aggregate(rows) | whole_set,
        "merged_from": [str(d) for d in dirs],
        "config": config or None,
    }
    write_json(out / SUMMARY, summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run directories (each holding results.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="the merged run's directory (not one of the runs)")
    args = parser.parse_args(argv)
    check_inputs(args.runs, args.out)
    summary = merge(args.runs, args.out)
    scores = []
    for name, score in summary["metrics"].items():
        if "mean" in score:  # a per-image metric
            scores.append(f"{name} {score['mean']:.4g} ± {score['std']:.2g}")
        else:  # a set-level one
            value = score["value"]
            scores.append(
                f"{name} {value:.4g} over {score['n']}" if value is not None else f"no {name}: {score['reason']}"
            )
    print(f"{summary['rows']} rows from {len(args.runs)} runs into {args.out}: " + ", ".join(scores))
