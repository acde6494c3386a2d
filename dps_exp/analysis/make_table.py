"""Reproduce the paper's tables from runs on disk, the paper's numbers beside ours: every row of its Tables 1, 2, 3, 6
and 7 (DPS and the baselines), ours where a run of that method and task is on disk, empty where none is.

    python scripts/make_table.py outputs/paper/ffhq_*            # run directories
    python scripts/make_table.py multirun/2026-11-27/12-00-00    # or folders holding runs
    python scripts/make_table.py RUNS... --paper ffhq --out tables/

Each argument is a run directory or a folder searched for runs (every results.jsonl with its summary.json).
Runs are sorted into the FFHQ or ImageNet table by their prior (`--paper` forces one, e.g. for runs with a
stand-in prior; runs without a network prior go by their data set), into a task by their operator and into a
method by their sampler class; the paper's values come from dps_exp/analysis/paper_values.yaml. Writes
OUT/<dataset>.md, .tex and .csv and prints the Markdown; under each table, notes say how its runs differ from the
paper's protocol of their method and how our implementation of a method differs from the paper's. FID is reported for runs that asked for it (`fid` in metrics.names): read from the
run summaries, and recomputed from the saved reconstructions where a table needs a set no run scored (best-of-N,
unmerged shards); that needs the Inception weights (see docs/reproduce.md) unless `--no-fid-recompute`.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from functools import partial
from pathlib import Path

from dps_exp.analysis.paper_table import build, dataset_of, load_values, to_csv, to_latex, to_markdown
from dps_exp.analysis.report import collect, fid_from_disk, run_dirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run directories, or folders holding runs")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("paper_tables"),
        help="where the tables go (default: %(default)s/, in the current directory)",
    )
    parser.add_argument("--paper", choices=["ffhq", "imagenet"], help="put every run in this data set's table")
    parser.add_argument("--no-fid-recompute", action="store_true", help="only FID values the runs recorded")
    parser.add_argument("--device", default="cpu", help="device for recomputing FID (cpu, cuda)")
    args = parser.parse_args(argv)

    missing = [str(p) for p in args.runs if not p.exists()]
    if missing:
        print(f"error: no such run directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    runs = collect(d for arg in args.runs for d in run_dirs(arg))
    if not runs:
        print(f"error: no results.jsonl under {', '.join(map(str, args.runs))}", file=sys.stderr)
        return 2
    values = load_values()
    by_dataset = defaultdict(list)
    for run in runs:
        config = run["summary"].get("config")
        dataset = args.paper or (dataset_of(config) if config else None)
        if dataset is None:
            why = "it has no summary.json" if not config else "its prior and data name no data set"
            print(f"warning: {run['dir']} is left out: {why} (pass --paper ffhq|imagenet)", file=sys.stderr)
            continue
        by_dataset[dataset].append(run)
    if not by_dataset:
        print("error: no table written: every run is left out (the warnings above say why)", file=sys.stderr)
        return 1
    fid = None if args.no_fid_recompute else partial(fid_from_disk, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    for dataset, group in sorted(by_dataset.items()):
        table = build(group, dataset, values, fid)
        for suffix, write in ((".md", to_markdown), (".tex", to_latex), (".csv", to_csv)):
            (args.out / f"{dataset}{suffix}").write_text(write(table))
        # flushed, or a piped stdout (block-buffered) lets a stderr line land inside the Markdown
        print(to_markdown(table), flush=True)
    print(f"{len(runs)} runs; tables in {args.out}/", file=sys.stderr)
    return 0
