"""Collect every run of a sweep from disk into one table and plots.

    python scripts/sweep_report.py multirun/2026-11-27/12-00-00
    python scripts/sweep_report.py SWEEP_DIR --x sampler.step_size --series sampler.eta --panel physics.mask

Writes SWEEP_DIR/report/{table.csv, table.md, <metric>.png}: for each metric (PSNR, and LPIPS when scored),
the mean over images against `--x`, one line per value of `--series`, one panel per value of `--panel`,
with error bars of one standard deviation over images. When the sweep logged to W&B (logger=wandb, mode not
disabled) the table and plots are logged too, as a run named `sweep-report` in the sweep's group.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dps_exp.analysis.report import collect, run_dirs, table, to_csv, to_markdown, varying  # noqa: E402
from dps_exp.run.points import sweep_group  # noqa: E402

HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False}


def per_image(run: dict, metric: str) -> list[float]:
    return [
        r["metrics"][metric] for r in run["rows"] if r.get("status") == "ok" and r["metrics"].get(metric) is not None
    ]


def series_keys(runs: list[dict], x: str, series: str, panel: str | None) -> list[str]:
    """`series` and every other key that varies but is neither `x` nor `panel` (steps, seed, …): points that
    differ in one are never drawn as one line."""
    return [series, *(k for k in varying(runs) if k not in (x, series, panel))]


def plot(runs: list[dict], metric: str, x: str, series: str, panel: str | None, out: Path) -> Path:
    """One line per value of the series keys, one panel per value of `panel`."""
    panels = sorted({r["params"].get(panel) for r in runs}, key=str) if panel else [None]
    keys = series_keys(runs, x, series, panel)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False, sharey=True)
    for ax, value in zip(axes[0], panels, strict=True):
        lines: dict = defaultdict(list)
        for r in runs:
            if panel and r["params"].get(panel) != value:
                continue
            vals = per_image(r, metric)
            if vals and r["params"].get(x) is not None:
                spread = statistics.stdev(vals) if len(vals) > 1 else 0.0
                label = ", ".join(f"{k.rsplit('.', 1)[-1]} = {r['params'].get(k)}" for k in keys)
                lines[label].append((r["params"][x], statistics.fmean(vals), spread))
        for label, points in sorted(lines.items()):
            points.sort()
            xs, ys, es = zip(*points, strict=True)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
        xs_all = sorted({p[0] for pts in lines.values() for p in pts})
        if xs_all and xs_all[0] > 0 and xs_all[-1] / xs_all[0] > 8:
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(xs_all, [f"{v:g}" for v in xs_all])
        ax.set_xlabel(x)
        ax.set_title(f"{panel} = {value}" if panel else metric.upper())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    better = "higher is better" if HIGHER_IS_BETTER.get(metric, True) else "lower is better"
    axes[0][0].set_ylabel(f"{metric.upper()} ({better}; ±1 std over images)")
    fig.tight_layout()
    path = out / f"{metric}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def log_to_wandb(runs: list[dict], columns, rows, images: list[Path], sweep_dir: Path) -> None:
    logger = runs[0]["summary"].get("config", {}).get("logger", {})
    if "WandbLogger" not in str(logger.get("_target_")) or logger.get("mode") == "disabled":
        return
    import wandb

    run = wandb.init(
        project=logger.get("project"),
        entity=logger.get("entity"),
        group=logger.get("group") or sweep_group(sweep_dir),
        name="sweep-report",
        job_type="report",
        mode=logger.get("mode", "offline"),
        dir=str(sweep_dir / "report"),
    )
    run.log({"sweep": wandb.Table(columns=columns, data=rows), **{p.stem: wandb.Image(str(p)) for p in images}})
    run.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--x", default="sampler.step_size")
    parser.add_argument("--series", default="sampler.eta")
    parser.add_argument("--panel", default="physics.mask", help="one panel per value (if it varies)")
    parser.add_argument("--metrics", nargs="+", default=["psnr", "lpips"])
    parser.add_argument("--no-wandb", action="store_true", help="do not log the report to W&B")
    args = parser.parse_args()

    runs = collect(run_dirs(args.sweep_dir))
    if not runs:
        raise SystemExit(f"error: no results.jsonl under {args.sweep_dir}")
    recorded = sorted({k for r in runs for k in r["params"]})
    for option in ("x", "series", "panel"):  # the defaults may be absent (a sweep without a mask); a choice may not
        key = getattr(args, option)
        if key not in recorded and (option == "x" or key != parser.get_default(option)):
            parser.error(f"--{option} {key}: no run records it; its runs record {', '.join(recorded)}")
    out = args.sweep_dir / "report"
    out.mkdir(exist_ok=True)
    columns, rows = table(runs)
    (out / "table.csv").write_text(to_csv(columns, rows))
    (out / "table.md").write_text(to_markdown(columns, rows))
    panel = args.panel if len({str(r["params"].get(args.panel)) for r in runs}) > 1 else None
    scored = [m for m in args.metrics if any(per_image(r, m) for r in runs)]
    for metric in sorted(set(args.metrics) - set(scored)):
        print(f"no {metric} plot: no run scored {metric}", file=sys.stderr)
    images = [plot(runs, m, args.x, args.series, panel, out) for m in scored]
    if not args.no_wandb:
        log_to_wandb(runs, columns, rows, images, args.sweep_dir)
    print(to_markdown(columns, rows))
    print(f"{len(runs)} runs; table and {len(images)} plot(s) in {out}")
