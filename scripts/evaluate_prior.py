"""`python scripts/evaluate_prior.py`: DPS on a learned prior against DPS on the Gaussian prior and against
plain interpolation, on crops of photographs the learned prior never saw. Writes into --out:

  results.jsonl   one line per (task, method, crop, sample | mean): PSNR in dB on [0, 1] images
  tuning.jsonl    with --tune: PSNR per (task, prior, step size) on other crops of the same photographs
  TASK.pt         ground truth, measurement pictures and every reconstruction, for figures

Tasks (--tasks): inpaintNN keeps NN% of the pixels at random, sr4 is ×4 super-resolution; both with noise
sigma 0.05. Their operators are the project's own, composed from its config (`physics=inpaint_random`,
`physics=super_resolution physics.factor=4`: bicubic, as the paper). The docs' table is made from these files
by scripts/prior_docs.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.errors import ConfigCompositionException, MissingConfigException

from dps_exp import batch
from dps_exp.analysis.baselines import linear_inpaint
from dps_exp.config import build
from dps_exp.denoisers.exact import exact_posterior
from dps_exp.metrics.image import psnr
from dps_exp.run.cli import compose
from dps_exp.run.engine import to_signed, to_unit
from dps_exp.train.crops import DEMO_PHOTOS, heldout_crops

SIGMA = 0.05  # measurement noise on the [-1, 1] scale, as every task of the paper


def task_overrides(task: str) -> list[str]:
    """The physics overrides of a task."""
    if task.startswith("inpaint"):
        return ["physics=inpaint_random", f"physics.mask={int(task[7:]) / 100}", f"physics.noise.sigma={SIGMA}"]
    return ["physics=super_resolution", "physics.factor=4", f"physics.noise.sigma={SIGMA}"]


def tasks_arg(text: str) -> list[str]:
    tasks = text.split(",")
    for task in tasks:
        keep = task[7:] if task.startswith("inpaint") else ""
        if task != "sr4" and not (keep.isdigit() and 0 < int(keep) <= 100):
            raise argparse.ArgumentTypeError(f"unknown task {task!r}: inpaintNN (keep NN% of the pixels, 1-100) or sr4")
    return tasks


def tune_arg(text: str) -> dict[str, list[float]]:
    """`PRIOR=Z1:Z2:...,...` → {prior: step sizes}."""
    try:
        return {k: [float(z) for z in v.split(":")] for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write PRIOR=Z1:Z2:...,... e.g. gaussian=5:10,natural32=1:2"
        ) from None


def step_size_arg(text: str) -> dict[tuple[str, str], float]:
    """`PRIOR:TASK=VALUE,...` → {(prior, task): step size}."""
    try:
        pairs = (item.split("=") for item in filter(None, text.split(",")))
        chosen = {tuple(key.split(":")): float(value) for key, value in pairs}
        if any(len(key) != 2 for key in chosen):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write PRIOR:TASK=VALUE,... e.g. natural32:sr4=2") from None
    return chosen


def physics_for(task: str, shape, indices: list[int], seed: int):
    """The task's operator drawn for `shape`, sample b drawing from crop indices[b]'s streams (so the
    samples of one crop share their operator)."""
    physics = build(compose(task_overrides(task))["physics"])
    return physics.draw(shape, batch.generators([seed] * len(indices), indices, "operator"), torch.device("cpu"))


def measure(task: str, x: torch.Tensor, seed: int):
    """(physics, y) for crops x (B, 3, H, W) on [-1, 1]; the streams of crop b are (seed, b)."""
    idx = list(range(x.shape[0]))
    physics = physics_for(task, x.shape, idx, seed)
    return physics, physics.measure(x, batch.generators([seed] * len(idx), idx, "measurement"))


def interpolate(task: str, physics, y: torch.Tensor, shape, mode: str = "bilinear") -> torch.Tensor:
    """The plain baseline, (B, 3, H, W) on [-1, 1]: inpainting, linear interpolation of the kept pixels
    (scipy griddata; nearest kept pixel outside their convex hull); super-resolution, upsampling of the
    measured low-resolution image (`mode`: bilinear, or bicubic, the stronger one)."""
    B, C, H, W = shape
    if not task.startswith("inpaint"):
        small = y.view(B, C, H // 4, W // 4)
        return F.interpolate(small, size=(H, W), mode=mode, align_corners=False).clamp(-1, 1)
    return linear_inpaint(y, physics.m).clamp(-1, 1)


def gaussian_posterior_mean(task, prior, y, shape, seed) -> torch.Tensor:
    """The Gaussian prior's exact posterior mean (its MMSE estimate), (B, 3, H, W) on [-1, 1]: what DPS on
    that prior approximates. One crop at a time (dense d × d algebra, d = 3·H·W)."""
    out = []
    for b in range(shape[0]):
        physics = physics_for(task, (1, *shape[1:]), [b], seed)
        out.append(exact_posterior(prior, physics, y[b : b + 1], shape[1:]).mean.float())
    return torch.cat(out)


def dps_samples(task, prior, schedule, x, steps, step_size, samples, seed, eta=1.0, crops=None) -> torch.Tensor:
    """`samples` DPS reconstructions per image, (B, S, 3, H, W) on [-1, 1]; `step_size` a number or one per
    image (B,). Image b measures crop `crops[b]` (default b): its operator and measurement come from that
    crop's streams (so copies of a crop share them), and sample s has its own sampler stream."""
    from dps_exp.samplers.dps import DPS

    B = x.shape[0]
    crops = list(range(B)) if crops is None else crops
    idx = [crops[b] for b in range(B) for _ in range(samples)]
    physics = physics_for(task, (B * samples, *x.shape[1:]), idx, seed)
    x_rep = x.repeat_interleave(samples, 0)
    y = physics.measure(x_rep, batch.generators([seed] * len(idx), idx, "measurement"))
    zeta = torch.as_tensor(step_size, dtype=torch.float64)
    zeta = zeta.repeat_interleave(samples) if zeta.ndim else zeta
    gens = [
        torch.Generator().manual_seed(batch.stream_seed(seed, c, f"sampler/{s}"))
        for c in idx[::samples]
        for s in range(samples)
    ]
    sampler = DPS(steps=steps, eta=eta, step_size=zeta)
    out = sampler.sample(y, physics, prior, schedule, noise=lambda: batch.randn(x_rep.shape, gens))
    return out.x.view(B, samples, *x.shape[1:])


def load_prior(name: str, schedule):
    """The `denoiser=NAME` option, built as a run builds it (frozen, eval mode)."""
    spec = compose([f"denoiser={name}"])
    return build(spec["denoiser"], schedule=schedule).eval().requires_grad_(False)


def score(x_hat: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """PSNR (dB) of [-1, 1] reconstructions (B, 3, H, W) against [0, 1] truth, clipped to [0, 1]."""
    return psnr(to_unit(x_hat), truth).tolist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("outputs/eval/natural32"))
    p.add_argument("--prior", default="natural32", help="the learned prior's denoiser option")
    p.add_argument(
        "--tasks", type=tasks_arg, default="inpaint20,inpaint10,sr4", help="inpaintNN or sr4, comma-separated"
    )
    p.add_argument("--per-image", type=int, default=8, help="crops per held-out photograph (4 photographs)")
    p.add_argument("--side", type=int, default=128, help="photographs are resized to this shorter side")
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--samples", type=int, default=4, help="DPS samples per crop (scored alone and averaged)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tune", type=tune_arg, default={}, help="PRIOR=Z1:Z2:...,... step sizes to try: write tuning.jsonl, stop"
    )
    p.add_argument(
        "--step-size", type=step_size_arg, default={}, help="PRIOR:TASK=VALUE,... (default: the best in tuning.jsonl)"
    )
    args = p.parse_args()
    names = ("gaussian", args.prior)
    if unknown := set(args.tune) - set(names) or {k[0] for k in args.step_size} - set(names):
        p.error(f"no prior {sorted(unknown)[0]!r} in this evaluation: it compares {' and '.join(names)} (--prior)")
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    schedule = build(compose([])["schedule"])
    try:
        priors = {name: load_prior(name, schedule) for name in names}
    except (ConfigCompositionException, MissingConfigException) as err:
        p.error(f"--prior {args.prior}: {str(err).splitlines()[0]}")
    args.out.mkdir(parents=True, exist_ok=True)
    (tune if args.tune else evaluate)(args, schedule, priors)


def tune(args, schedule, priors) -> None:
    """DPS on 8 crops other than the test crops (another random draw), for each prior's step sizes in
    --tune; every step size sees the same measurements and noise. Appends to tuning.jsonl."""
    crops, _ = heldout_crops(DEMO_PHOTOS, 2, args.side, args.crop, seed=args.seed + 1)
    with (args.out / "tuning.jsonl").open("a") as f:
        for task in args.tasks:
            for name, sizes in args.tune.items():
                tic = time.perf_counter()
                x = to_signed(crops).repeat(len(sizes), 1, 1, 1)
                zeta = torch.tensor(sizes).repeat_interleave(crops.shape[0])
                same = list(range(crops.shape[0])) * len(sizes)
                x_hat = dps_samples(task, priors[name], schedule, x, args.steps, zeta, 1, args.seed, crops=same)
                scores = torch.tensor(score(x_hat[:, 0], to_unit(x))).view(len(sizes), -1).mean(1).tolist()
                for z, v in zip(sizes, scores, strict=True):
                    f.write(json.dumps({"task": task, "prior": name, "steps": args.steps, "step_size": z, "psnr": v}))
                    f.write("\n")
                shown = [f"{z:g}:{v:.2f}" for z, v in zip(sizes, scores, strict=True)]
                print(task, name, shown, f"{time.perf_counter() - tic:.0f}s", flush=True)


def evaluate(args, schedule, priors) -> None:
    """Every method on the test crops; writes results.jsonl (replacing an earlier one only once complete),
    TASK.pt and run.json."""
    chosen = best_step_sizes(args.out / "tuning.jsonl", args.steps) | args.step_size
    for name, task in ((name, task) for task in args.tasks for name in priors):
        if (name, task) not in chosen:
            raise SystemExit(f"error: no step size for {name} on {task}: run --tune first or pass --step-size")
    crops, labels = heldout_crops(DEMO_PHOTOS, args.per_image, args.side, args.crop, seed=args.seed)
    x = to_signed(crops)
    partial = args.out / "results.jsonl.partial"
    with partial.open("w") as f:

        def record(task, method, x_hat, sample, extra=None):
            for b, v in enumerate(score(x_hat, crops)):
                row = {"task": task, "method": method, "crop": b, "label": labels[b], "sample": sample, "psnr": v}
                f.write(json.dumps(row | (extra or {})) + "\n")

        for task in args.tasks:
            physics, y = measure(task, x, args.seed)
            saved = {"truth": crops, "measurement": to_unit(physics.to_image(y)), "labels": labels}
            saved["interpolation"] = interpolate(task, physics, y, x.shape)
            record(task, "interpolation", saved["interpolation"], "-")
            if not task.startswith("inpaint"):
                saved["bicubic"] = interpolate(task, physics, y, x.shape, "bicubic")
                record(task, "bicubic", saved["bicubic"], "-")
            if args.crop <= 32:  # dense d × d algebra: 64×64 crops would need ~1 GB per matrix
                saved["exact-gaussian"] = gaussian_posterior_mean(task, priors["gaussian"], y, x.shape, args.seed)
                record(task, "exact-gaussian", saved["exact-gaussian"], "mean")
            for name, prior in priors.items():
                zeta, tic = chosen[(name, task)], time.perf_counter()
                xs = dps_samples(task, prior, schedule, x, args.steps, zeta, args.samples, args.seed)
                extra = {"step_size": zeta, "steps": args.steps, "seconds": time.perf_counter() - tic}
                for s in range(args.samples):
                    record(task, f"dps-{name}", xs[:, s], s, extra)
                record(task, f"dps-{name}", xs.mean(1), "mean", extra)
                saved[f"dps-{name}"] = xs
                print(task, name, f"step size {zeta:g}", f"{extra['seconds']:.0f}s", flush=True)
            torch.save(saved, args.out / f"{task}.pt")
    partial.replace(args.out / "results.jsonl")
    chosen = {f"{name}:{task}": zeta for (name, task), zeta in chosen.items()}
    (args.out / "run.json").write_text(json.dumps(vars(args) | {"out": str(args.out), "step_size": chosen}, indent=2))


def best_step_sizes(path: Path, steps: int) -> dict[tuple[str, str], float]:
    """(prior, task) → the step size of highest mean PSNR in tuning.jsonl at this step count."""
    best: dict[tuple[str, str], tuple[float, float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            key = (r["prior"], r["task"])
            if r["steps"] == steps and r["psnr"] > best.get(key, (-1.0, 0.0))[0]:
                best[key] = (r["psnr"], r["step_size"])
    return {k: v[1] for k, v in best.items()}


if __name__ == "__main__":
    main()
