"""`python scripts/prior_docs.py demo|figures`: the pictures and tables of docs/priors.md, from results on disk.

demo     runs `experiment=demo` on the learned prior and on the Gaussian prior (in-process, as
         `python -m dps_exp.run` would) into --demo/natural32 and --demo/gaussian
figures  reads those runs, scripts/evaluate_prior.py's and scripts/posterior_testbed.py's results, writes
         docs/figures/demo.png and docs/figures/gmm_step_size.png, and prints the markdown tables; an input
         that is not there is named and skipped (none there: an error)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dps_exp.analysis.baselines import linear_inpaint  # noqa: E402

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"
PAD = 2  # torchvision make_grid's padding in the run's panels


def run_demo(out: Path, gaussian_step_size: float) -> None:
    from dps_exp.run.cli import compose
    from dps_exp.run.experiment import Run

    for name, extra in (
        ("natural32", []),
        ("gaussian", ["denoiser=gaussian", f"sampler.step_size={gaussian_step_size}"]),
    ):
        (summary,) = Run(compose(["experiment=demo", "logger=none", *extra]), out / name).execute()
        print(name, f"{summary['metrics']['psnr']['mean']:.2f} dB", f"{summary['wall_time_s']:.0f} s")


def panels(path: Path) -> list[np.ndarray]:
    """The run's PNG panel (measurement | reconstruction | truth) cut into its three (H, W, 3) tiles."""
    img = np.asarray(Image.open(path).convert("RGB")).astype(np.float64) / 255
    h = img.shape[0] - 2 * PAD
    return [img[PAD : PAD + h, PAD + i * (h + PAD) : PAD + i * (h + PAD) + h] for i in range(3)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((a - b) ** 2)))


def demo_figure(demo: Path) -> None:
    rows = [json.loads(line) for line in (demo / "natural32" / "results.jsonl").read_text().splitlines()]
    gauss = {r["index"]: r for r in map(json.loads, (demo / "gaussian" / "results.jsonl").read_text().splitlines())}
    fig, axes = plt.subplots(len(rows), 5, figsize=(12.5, 2.6 * len(rows)))
    for ax_row, r in zip(np.atleast_2d(axes), rows, strict=True):
        y, learned, truth = panels(demo / "natural32" / r["image"])
        _, gaussian, _ = panels(demo / "gaussian" / gauss[r["index"]]["image"])
        mask = torch.load(demo / "natural32" / r["operator"], weights_only=True)["mask"][0].numpy()
        interp = linear_inpaint(torch.from_numpy(y).permute(2, 0, 1)[None], torch.from_numpy(mask)[None, None])
        interp = interp[0].permute(1, 2, 0).double().numpy().clip(0, 1)
        tiles = [
            (y * mask[..., None], f"measured ({mask.mean():.0%} kept)"),
            (interp, f"linear interp. {psnr(interp, truth):.1f} dB"),
            (gaussian, f"DPS, Gaussian {psnr(gaussian, truth):.1f} dB"),
            (learned, f"DPS, natural32 {psnr(learned, truth):.1f} dB"),
            (truth, "ground truth"),
        ]
        for ax, (img, title) in zip(ax_row, tiles, strict=True):
            ax.imshow(img, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(FIGURES / "demo.png", dpi=80)
    print(f"wrote {FIGURES / 'demo.png'}")


def fmt(vals: list[float]) -> str:
    return f"{statistics.fmean(vals):.2f} ± {statistics.stdev(vals):.2f}" if len(vals) > 1 else f"{vals[0]:.2f}"


def eval_table(path: Path, prior: str) -> None:
    """Mean ± std PSNR over crops (single samples: over all crops and samples) per task and method."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    by = defaultdict(list)
    for r in rows:
        kind = "mean" if r["sample"] == "mean" else ("single" if isinstance(r["sample"], int) else "-")
        by[(r["task"], r["method"], kind)].append(r)
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    cols = [
        ("interpolation", "-", "linear interpolation"),
        ("bicubic", "-", "bicubic (SR)"),
        ("exact-gaussian", "mean", "Gaussian prior, exact posterior mean"),
        ("dps-gaussian", "single", "DPS Gaussian, 1 sample"),
        ("dps-gaussian", "mean", "DPS Gaussian, mean of 4"),
        (f"dps-{prior}", "single", f"DPS {prior}, 1 sample"),
        (f"dps-{prior}", "mean", f"DPS {prior}, mean of 4"),
    ]
    n = len(by[(tasks[0], "interpolation", "-")])
    k = 1 + max(r["sample"] for r in rows if isinstance(r["sample"], int))  # samples per crop
    cols = [(m, kind, label.replace("mean of 4", f"mean of {k}")) for m, kind, label in cols]
    print(f"\nPSNR (dB) over {n} held-out crops, mean ± std:\n")
    print("| task | " + " | ".join(c[2] for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for task in tasks:
        cells = [fmt([r["psnr"] for r in by[(task, m, k)]]) if by[(task, m, k)] else "" for m, k, _ in cols]
        print(f"| {task} | " + " | ".join(cells) + " |")
    print("\nPaired differences over crops (mean ± standard error; wins = crops where the first is better):\n")
    for task in tasks:
        single = per_crop(by[(task, f"dps-{prior}", "single")])
        mean4 = per_crop(by[(task, f"dps-{prior}", "mean")])
        pairs = [
            (f"DPS {prior} − DPS Gaussian, 1 sample", single, per_crop(by[(task, "dps-gaussian", "single")])),
            (f"DPS {prior} mean of {k} − interpolation", mean4, per_crop(by[(task, "interpolation", "-")])),
            (f"DPS {prior} 1 sample − interpolation", single, per_crop(by[(task, "interpolation", "-")])),
        ]
        if by[(task, "bicubic", "-")]:
            pairs.append((f"DPS {prior} mean of {k} − bicubic", mean4, per_crop(by[(task, "bicubic", "-")])))
        for label, a, b in pairs:
            d = [a[c] - b[c] for c in a]
            se = statistics.stdev(d) / len(d) ** 0.5
            wins = sum(v > 0 for v in d)
            print(f"- {task}: {label}: {statistics.fmean(d):+.2f} ± {se:.2f} dB ({wins}/{len(d)} crops)")
    print(
        "\nDPS settings: "
        + "; ".join(
            f"{t} {m}: {r['steps']} steps, step size {r['step_size']:g}, {r['seconds']:.0f} s"
            for (t, m, k), rs in by.items()
            if k == "mean" and m.startswith("dps")
            for r in rs[:1]
        )
    )


def per_crop(rows: list[dict]) -> dict[int, float]:
    """Mean PSNR per crop (over its samples)."""
    acc = defaultdict(list)
    for r in rows:
        acc[r["crop"]].append(r["psnr"])
    return {c: statistics.fmean(v) for c, v in acc.items()}


def testbed(path: Path) -> dict:
    """Rows of posterior_testbed.py grouped by (eta, step size), averaged over images."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    groups = defaultdict(list)
    for r in rows:
        groups[(r["eta"], r["step_size"])].append(r)
    return {
        k: {m: statistics.fmean(r[m] for r in g) for m in g[0] if isinstance(g[0][m], float | int)}
        for k, g in groups.items()
    }


def testbed_plot(gmm: Path) -> None:
    metrics = [
        ("mean_rmse", "mean_rmse_floor", "RMSE of the sample mean\nvs the exact posterior mean"),
        ("sliced_w2", "sliced_w2_floor", "sliced W₂ to exact\nposterior samples"),
        ("coverage", "coverage_expected", "coverage of the true x\n(inside the samples' range)"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    agg = testbed(gmm)
    for eta in sorted({e for e, _ in agg}, reverse=True):
        zs = sorted(z for e, z in agg if e == eta)
        for ax, (m, floor, _) in zip(axes, metrics, strict=True):
            ax.plot(zs, [agg[(eta, z)][m] for z in zs], marker="o", ms=3, label=f"DPS, η = {eta:g}")
            if eta == max(e for e, _ in agg):
                ax.plot(zs, [agg[(eta, z)][floor] for z in zs], "k--", alpha=0.6, label="exact sampler, same N")
    for ax, (_, _, title) in zip(axes, metrics, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("step size ζ")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIGURES / "gmm_step_size.png", dpi=80)
    print(f"wrote {FIGURES / 'gmm_step_size.png'}")


def testbed_table(path: Path) -> None:
    agg = testbed(path)
    print(f"\n{path}: per (eta, step size), averaged over images\n")
    print(
        "| η | ζ | PSNR DPS 1 sample | PSNR exact sample | PSNR DPS mean | PSNR exact mean | mean RMSE (floor) | SW₂ (floor) | coverage (exact) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (eta, z), a in sorted(agg.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        print(
            f"| {eta:g} | {z:g} | {a['psnr_sample']:.2f} | {a['psnr_exact_sample']:.2f} | {a['psnr_mean']:.2f} | "
            f"{a['psnr_exact_mean']:.2f} | {a['mean_rmse']:.3f} ({a['mean_rmse_floor']:.3f}) | "
            f"{a['sliced_w2']:.3f} ({a['sliced_w2_floor']:.3f}) | {a['coverage']:.2f} ({a['coverage_expected']:.2f}) |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["demo", "figures"])
    p.add_argument("--demo", type=Path, default=Path("outputs/docs/demo"), help="the demo runs' folder")
    p.add_argument("--gaussian-step-size", type=float, default=10.0, help="demo: the Gaussian prior's step size")
    p.add_argument("--eval", type=Path, nargs="*", default=[Path("outputs/eval/natural32")],
                   help="figures: evaluate_prior.py --out folders")  # fmt: skip
    p.add_argument("--prior", default="natural32", help="figures: the learned prior evaluated there")
    p.add_argument("--gmm", type=Path, default=Path("outputs/testbed/gmm/results.jsonl"),
                   help="figures: posterior_testbed.py --prior gmm results")  # fmt: skip
    p.add_argument("--gaussian", type=Path, default=Path("outputs/testbed/gaussian/results.jsonl"),
                   help="figures: posterior_testbed.py --prior gaussian results")  # fmt: skip
    args = p.parse_args()
    if args.what == "demo":
        run_demo(args.demo, args.gaussian_step_size)
        return
    FIGURES.mkdir(parents=True, exist_ok=True)
    found = 0
    for path, make in [
        (args.demo / "natural32" / "results.jsonl", lambda path: demo_figure(args.demo)),
        *((folder / "results.jsonl", lambda path: eval_table(path, args.prior)) for folder in args.eval),
        (args.gmm, lambda path: (testbed_plot(path), testbed_table(path))),
        (args.gaussian, testbed_table),
    ]:
        if not path.is_file():
            print(f"skipped: {path} is not there", file=sys.stderr)
            continue
        found += 1
        print(f"\n## {path.parent}")
        make(path)
    if not found:
        p.error("none of the results named is there: nothing to make (see the options in --help)")


if __name__ == "__main__":
    main()
