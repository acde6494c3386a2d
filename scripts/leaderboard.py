"""`python scripts/leaderboard.py`: every sampler against the exact posterior, per task, against NFE and wall time.

On the exact-posterior test beds (`--priors gmm,gaussian`: ground truth drawn from the prior, `data=prior_samples`,
docs/priors.md), each image is measured once per task and every sampler that supports the task (its own check
decides; the refusals are listed) draws --samples samples per image at each of a few step or iteration counts
(--settings), all through the run's engine (`dps_exp.run.testbed`). Each set of draws is scored against the exact
posterior as a run with `samples=N` scores it: the error of the sample mean to the exact posterior mean
(`mean_rmse`), the sliced Wasserstein distance to the posterior (`sliced_w2`) and the coverage of the truth, each
next to what an exact sampler scores with as many draws; also PSNR of a draw and of the draws' mean to the truth.
The row `exact` is that exact sampler (draws from the exact posterior: NFE 0). Phase retrieval is not linear, so it
has no exact posterior: it is scored by PSNR only.

Writes into --out (anew each time): results.jsonl (one line per prior, task, sampler, setting and image),
leaderboard.csv and leaderboard.json (means over the images), leaderboard.md (a table per prior and task, the
refusals under it) and PRIOR_nfe.png, PRIOR_seconds.png (each score against NFE and against wall time, a curve
per sampler). Wall time is the engine's for the batch of all images × samples, on this machine as loaded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
from hydra.errors import HydraException

from dps_exp.analysis.report import to_csv, to_markdown
from dps_exp.denoisers.exact import exact_posterior
from dps_exp.errors import ConfigError, UserError
from dps_exp.metrics.image import psnr
from dps_exp.run.engine import to_unit
from dps_exp.run.testbed import Bed, names, positive

PRIORS = {
    "gmm": ["denoiser=gmm", "denoiser.image_size=16"],  # 1 × 16 × 16, K = 4
    "gaussian": ["denoiser=gaussian"],  # 3 × 16 × 16
}
TASKS = {
    "inpaint": ["physics=inpaint_random", "physics.mask=0.2"],
    "sr": ["physics=super_resolution", "physics.factor=4"],
    # the paper's 61-px, σ = 3 blur is wider than a 16-px image: the same Gaussian at a quarter of the size
    "blur": ["physics=gaussian_blur", "physics.std=1.5", "physics.kernel_size=13"],
    "denoise": ["physics=denoise"],
    "phase": ["physics=phase_retrieval"],
}
SAMPLERS = {
    # name: (the key the settings walk, its default values, fixed overrides)
    "dps": ("sampler.steps", [10, 30, 100], []),
    # the test beds' priors have no learned variance: the DDIM(η = 1) update of DPS's tutorial
    "score_sde": ("sampler.steps", [10, 30, 100], ["sampler.variance=eta"]),
    "mcg": ("sampler.steps", [10, 30, 100], ["sampler.variance=eta"]),
    "ddrm": ("sampler.steps", [5, 20, 50], []),
    "pnp_admm": ("sampler.iterations", [5, 10, 40], []),
    "admm_tv": ("sampler.iterations", [10, 50, 200], []),
    "er": ("sampler.iterations", [50, 200, 1000], []),
    "hio": ("sampler.iterations", [50, 200, 1000], []),
    "oss": ("sampler.iterations", [50, 200, 1000], []),
}
SCORES = ["mean_rmse", "mean_rmse_floor", "sliced_w2", "sliced_w2_floor", "coverage", "coverage_expected"]
COLUMNS = ["prior", "task", "sampler", "setting", "nfe", "seconds", "diverged", *SCORES, "psnr_sample", "psnr_mean"]


def settings(text: str) -> dict[str, list[int]]:
    """`dps=25:100,ddrm=5:20` → {"dps": [25, 100], "ddrm": [5, 20]}."""
    out = {}
    for part in filter(None, text.split(",")):
        name, _, values = part.partition("=")
        if name not in SAMPLERS or not values:
            raise argparse.ArgumentTypeError(f"{part!r}: SAMPLER=N:N:…, SAMPLER one of {', '.join(SAMPLERS)}")
        out[name] = [positive(v) for v in values.split(":")]
    return out


def finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def scored(bed: Bed, xs: torch.Tensor, exact, b: int) -> dict[str, float | None]:
    """Image b's draws xs (S, C, H, W): posterior scores (where there is an exact posterior) and PSNRs."""
    truth = bed.truth[b][None]
    row = dict.fromkeys(SCORES) if exact is None else bed.score(xs, exact, b)
    row["psnr_sample"] = psnr(to_unit(xs), truth.expand_as(xs)).mean().item()
    row["psnr_mean"] = psnr(to_unit(xs.mean(0, keepdim=True)), truth).item()
    return {k: None if v is None else finite(v) for k, v in row.items()}


def run_task(args, prior: str, task: str, out) -> tuple[list[dict], list[str]]:
    """Every chosen sampler on one prior and task: per-image rows, and the refusals (one line each)."""
    base = [*PRIORS[prior], "data=prior_samples", f"data.count={args.images}", "data.size=16",
            "metrics.names=[psnr]", f"seed={args.seed}", *TASKS[task], *args.overrides]  # fmt: skip
    # DPS runs every task: a config it cannot run is the caller's mistake, not a refusal
    reference = Bed.build([*base, "sampler=dps"])
    physics, y = reference.measure()
    tic, exact = time.perf_counter(), None
    if task != "phase":  # linear, Gaussian noise: the exact posterior
        exact = exact_posterior(reference.prior, physics, y, reference.truth.shape[1:])
        exact.factors()  # once for the batch: every set scored against it samples from it
    rows, refused = [], []

    def record(bed: Bed, sampler: str, setting, xs, nfe: int, seconds: float, diverged: list[int]) -> None:
        for b in range(xs.shape[0]):
            row = {"prior": prior, "task": task, "sampler": sampler, "setting": setting, "image": b, "nfe": nfe,
                   "seconds": seconds, "diverged": diverged[b], **scored(bed, xs[b], exact, b)}  # fmt: skip
            rows.append(row)
            out.write(json.dumps(row) + "\n")

    if exact is not None:  # the exact posterior sampler, scored the same way; its time includes the algebra
        xs = exact.sample(args.samples, torch.Generator().manual_seed(args.seed)).float()
        record(reference, "exact", "", xs, 0, time.perf_counter() - tic, [0] * xs.shape[0])
    for sampler in args.samplers:
        key, values, fixed = SAMPLERS[sampler]
        for value in args.settings.get(sampler, values):
            bed = Bed.build([*base, f"sampler={sampler}", *fixed, f"{key}={value}"], check=False, like=reference)
            try:
                bed.check()
            except ConfigError as err:
                refused.append(f"{sampler}: {str(err).splitlines()[0]}")
                break
            xs, result = bed.draws(args.samples)
            xs = xs[:, 0]  # (B, S, C, H, W): one point
            diverged = torch.tensor(result.diverged_at).view(xs.shape[:2]).ge(0).sum(1).tolist()
            record(bed, sampler, f"{key.split('.')[-1]}={value}", xs, result.nfe[0], result.seconds, diverged)
            print(f"{prior} {task} {sampler} {key}={value}: {result.seconds:.1f}s", flush=True)
    return rows, refused


def summarise(rows: list[dict]) -> list[dict]:
    """Means over the images of each (prior, task, sampler, setting), in the order first seen."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["prior"], r["task"], r["sampler"], r["setting"]), []).append(r)
    out = []
    for (prior, task, sampler, setting), rs in groups.items():
        mean = {}
        for k in [*SCORES, "psnr_sample", "psnr_mean"]:
            vals = [r[k] for r in rs]
            mean[k] = None if None in vals else sum(vals) / len(vals)
        out.append({"prior": prior, "task": task, "sampler": sampler, "setting": setting, "nfe": rs[0]["nfe"],
                    "seconds": rs[0]["seconds"], "diverged": sum(r["diverged"] for r in rs), **mean})  # fmt: skip
    return out


def with_floor(value: float | None, floor: float | None) -> str:
    return "–" if value is None else f"{value:.3f} ({floor:.3f})"


def markdown(summary: list[dict], refused: dict[tuple, list[str]], samples: int) -> str:
    """A table per prior and task, sorted by the mean's error (PSNR for phase retrieval), the refusals under it."""
    header = ["sampler", "setting", "NFE", "seconds", "mean RMSE (exact)", "SW₂ (exact)",
              f"coverage ({(samples - 1) / (samples + 1):.2f})", "PSNR 1 draw", f"PSNR mean of {samples}", "diverged"]  # fmt: skip
    parts = []
    for prior, task in dict.fromkeys((r["prior"], r["task"]) for r in summary):
        rs = [r for r in summary if (r["prior"], r["task"]) == (prior, task)]
        rs.sort(key=lambda r: r["mean_rmse"] if r["mean_rmse"] is not None else -r["psnr_mean"])
        table = [[r["sampler"], r["setting"], r["nfe"], f"{r['seconds']:.2f}",
                  with_floor(r["mean_rmse"], r["mean_rmse_floor"]), with_floor(r["sliced_w2"], r["sliced_w2_floor"]),
                  "–" if r["coverage"] is None else f"{r['coverage']:.2f}", f"{r['psnr_sample']:.2f}",
                  f"{r['psnr_mean']:.2f}", r["diverged"]] for r in rs]  # fmt: skip
        parts.append(f"#### {prior}, {task}\n\n" + to_markdown(header, table))
        if refused.get((prior, task)):
            parts.append("Not run (the sampler's own check): " + "; ".join(refused[(prior, task)]) + "\n")
    return "\n".join(parts)


PLOTTED = {"mean_rmse": "mean_rmse_floor", "sliced_w2": "sliced_w2_floor", "coverage": "coverage_expected",
           "psnr_sample": None}  # fmt: skip
"""The scores plotted (one row of panels each) and the exact sampler's value drawn beside each (dashed)."""


def plot(summary: list[dict], x: str, path: Path, title: str) -> None:
    """One panel per score and task: the score against `x` (NFE or seconds), a curve per sampler through its
    settings, the exact sampler's expected value dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in summary))
    samplers = list(dict.fromkeys(r["sampler"] for r in summary))
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(samplers)}
    fig, axes = plt.subplots(len(PLOTTED), len(tasks), figsize=(3.2 * len(tasks), 2.4 * len(PLOTTED)), squeeze=False)
    for col, task in enumerate(tasks):
        rs = [r for r in summary if r["task"] == task]
        for row, (score, floor) in enumerate(PLOTTED.items()):
            ax = axes[row, col]
            for s in samplers:
                pts = sorted((r[x], r[score]) for r in rs if r["sampler"] == s and r[score] is not None)
                if pts:
                    ax.plot(*zip(*pts, strict=True), "o-", color=colours[s], label=s, ms=4)
            floors = [r[floor] for r in rs if floor and r[floor] is not None]
            if floors:
                ax.axhline(sum(floors) / len(floors), color="grey", ls="--", lw=1)
            if not ax.lines:  # phase retrieval has no exact posterior to score against
                ax.set_axis_off()
            elif x == "nfe":  # linear below 1: the samplers without a network sit at 0
                ax.set_xscale("symlog", linthresh=1)
                ax.set_xlim(left=-0.3)
            else:
                ax.set_xscale("log")
            ax.set_title(f"{task}: {score}", fontsize=9)
            ax.tick_params(labelsize=7)
            if row == len(PLOTTED) - 1:
                ax.set_xlabel("NFE per sample" if x == "nfe" else "seconds per batch", fontsize=8)
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines() if not h.get_label().startswith("_")}
    fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=len(handles), fontsize=8)
    fig.text(0.5, 0.955, f"prior: {title}; dashed: an exact sampler's expected value", ha="center", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("outputs/leaderboard"))
    p.add_argument("--priors", type=names(list(PRIORS)), default=list(PRIORS))
    p.add_argument("--tasks", type=names(list(TASKS)), default=list(TASKS))
    p.add_argument("--samplers", type=names(list(SAMPLERS)), default=list(SAMPLERS))
    p.add_argument("--images", type=positive, default=4)
    p.add_argument("--samples", type=positive, default=16, help="draws per image and setting")
    p.add_argument("--settings", type=settings, default={}, help="e.g. dps=25:100,ddrm=5:20 (default: SAMPLERS)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. physics.noise.sigma=0.1")
    p.add_argument("--replot", action="store_true", help="only redraw the plots from --out/leaderboard.json")
    args = p.parse_args(argv)
    if args.replot:
        if not (args.out / "leaderboard.json").is_file():
            p.error(f"--replot: no {args.out / 'leaderboard.json'} (run without --replot first)")
        return plots(json.loads((args.out / "leaderboard.json").read_text()), args.out)
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    args.out.mkdir(parents=True, exist_ok=True)
    rows, refused = [], {}
    with (args.out / "results.jsonl").open("w") as out:
        for prior in args.priors:
            for task in args.tasks:
                try:
                    task_rows, refused[(prior, task)] = run_task(args, prior, task, out)
                except (UserError, HydraException) as err:
                    p.error(f"{prior}, {task}: {str(err).splitlines()[0]}")
                rows += task_rows
    summary = summarise(rows)
    (args.out / "leaderboard.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "leaderboard.csv").write_text(to_csv(COLUMNS, [[r[k] for k in COLUMNS] for r in summary]))
    (args.out / "leaderboard.md").write_text(markdown(summary, refused, args.samples))
    plots(summary, args.out)
    print(f"wrote {args.out}/leaderboard.{{md,csv,json}} and the plots", flush=True)


def plots(summary: list[dict], out: Path) -> None:
    """PRIOR_nfe.png and PRIOR_seconds.png for each prior of the summary."""
    for prior in dict.fromkeys(r["prior"] for r in summary):
        for x in ("nfe", "seconds"):
            plot([r for r in summary if r["prior"] == prior], x, out / f"{prior}_{x}.png", prior)


if __name__ == "__main__":
    main()
