"""Merge runs of the same configuration (e.g. the shards of `data.shard=i data.num_shards=n`) into one.

    python scripts/merge_runs.py multirun/2026-11-27/12-00-00/{0,1,2,3} --out outputs/merged

Rows are concatenated in image order (a key present twice is kept once); runs of different configurations
(their `config_id`) are refused. Writes OUT/results.jsonl and OUT/summary.json; images and operators stay
where they are, referenced by path. When the runs scored FID, it is recomputed over the merged set (a shard's
FID is not a part of the whole's): from the saved reconstructions, with the Inception weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dps_exp.report import fid_from_disk
from dps_exp.tracking import RESULTS, SUMMARY, aggregate, counts, read_results, write_json


def merge(dirs: list[Path], out: Path) -> dict:
    rows, seen, configs = [], set(), set()
    for d in dirs:
        for row in read_results(d / RESULTS):
            configs.add(row.get("config_id"))
            if row["key"] in seen:
                continue
            seen.add(row["key"])
            for field in ("image", "reconstruction", "operator"):
                if row.get(field):
                    row[field] = str((d / row[field]).resolve())
            rows.append(row)
    if len(configs) > 1:
        raise SystemExit(f"error: the runs hold different configurations ({sorted(map(str, configs))}); not merging")
    rows.sort(key=lambda r: (r["index"], r["key"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = json.loads((dirs[0] / SUMMARY).read_text()) if (dirs[0] / SUMMARY).exists() else {}
    config = first.get("config") or {}
    whole_set = {"fid": fid_from_disk(rows, config)} if "fid" in config.get("metrics", {}).get("names", []) else {}
    summary = {
        "status": "merged",
        **counts(rows),
        "metrics": aggregate(rows) | whole_set,
        "merged_from": [str(d) for d in dirs],
        "config": first.get("config"),
    }
    write_json(out / SUMMARY, summary)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    summary = merge(args.runs, args.out)
    scores = [f"{m} {a['mean']:.4g} ± {a['std']:.2g}" for m, a in summary["metrics"].items() if "mean" in a]
    if "fid" in summary["metrics"]:
        fid = summary["metrics"]["fid"]
        scores.append(
            f"FID {fid['value']:.4g} over {fid['n']}" if fid["value"] is not None else f"no FID: {fid['reason']}"
        )
    print(f"{summary['rows']} rows from {len(args.runs)} runs into {args.out}: " + ", ".join(scores))


if __name__ == "__main__":
    main()
