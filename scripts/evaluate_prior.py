"""`python scripts/evaluate_prior.py`: DPS on a learned prior against DPS on the Gaussian prior and against
plain interpolation, on crops of photographs the learned prior never saw. Writes into --out:

  results.jsonl   one line per (task, method, crop, sample | mean): PSNR in dB on [0, 1] images
  tuning.jsonl    with --tune: PSNR per (task, prior, step size) on other crops of the same photographs
  TASK.pt         ground truth, measurement pictures and every reconstruction, for figures

Tasks (--tasks): inpaintNN keeps NN% of the pixels at random, sr4 is ×4 super-resolution; both with noise
sigma 0.05. Their operators are the project's own, composed from its config (`physics=inpaint_random`,
`physics=super_resolution physics.factor=4`: bicubic, as the paper). DPS goes through the run's engine
(`dps_exp.run.engine.Engine`) with the config of that task and prior: crop c's operator, measurement and draw s
are those a run would give image c (`seed=--seed`, `samples=--samples`), and the baselines see the same
measurement. The docs' table is made from these files by scripts/prior_docs.py.
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

from dps_exp.analysis.baselines import linear_inpaint
from dps_exp.config import build
from dps_exp.denoisers.exact import exact_posterior
from dps_exp.errors import UserError
from dps_exp.metrics.image import psnr
from dps_exp.physics.base import Physics
from dps_exp.run.cli import compose
from dps_exp.run.engine import Batch, Engine, to_signed, to_unit
from dps_exp.run.points import expand
from dps_exp.run.settings import per_sample_of, validate
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


def spec_for(task: str, prior: str, steps: int, seed: int) -> dict:
    """The run config of DPS with `prior` on `task` (η = 1; the step size is set per sample), validated."""
    spec = compose([*task_overrides(task), f"denoiser={prior}", f"sampler.steps={steps}", f"seed={seed}",
                    "metrics.names=[psnr]"])  # fmt: skip
    validate(spec)
    return spec


def engines(names, tasks, steps: int, seed: int, crop: int) -> dict[tuple[str, str], Engine]:
    """An engine per (prior, task), each prior built once as a run builds it (frozen, eval mode)
    and each configuration checked against crop×crop RGB images as a run checks it."""
    specs = {(name, task): spec_for(task, name, steps, seed) for name in names for task in tasks}
    schedule = build(next(iter(specs.values()))["schedule"])
    priors = {name: build(specs[(name, tasks[0])]["denoiser"], schedule=schedule).eval().requires_grad_(False)
              for name in names}  # fmt: skip
    out = {}
    for (name, task), spec in specs.items():
        out[(name, task)] = Engine(spec, schedule, priors[name], build(spec["metrics"]), torch.device("cpu"))
        out[(name, task)].check((3, crop, crop), first_point(spec))
    return out


def first_point(spec) -> dict:
    """The config's per-sample values (seed, noise, mask, η, step size, …)."""
    return expand(spec, per_sample_of(spec))[0]


def batch_of(engine: Engine, crops: torch.Tensor, indices, draws, step_sizes=None) -> Batch:
    """A batch of crops (B, 3, H, W) on [0, 1], sample b measuring as image indices[b] and drawing draws[b];
    `step_sizes` one per sample (default: the config's)."""
    values = {k: [v] * len(indices) for k, v in first_point(engine.spec).items()}
    if step_sizes is not None:
        values["sampler.step_size"] = [float(z) for z in step_sizes]
    return Batch(crops, values, list(indices), list(draws))


def measure(engine: Engine, crops: torch.Tensor) -> tuple[Physics, torch.Tensor]:
    """(physics, y) for crops (B, 3, H, W) on [0, 1], crop b measured as image b of a run."""
    B = crops.shape[0]
    return engine.measure(to_signed(crops), batch_of(engine, crops, range(B), [0] * B))


def interpolate(task: str, physics, y: torch.Tensor, shape, mode: str = "bilinear") -> torch.Tensor:
    """The plain baseline, (B, 3, H, W) on [-1, 1]: inpainting, linear interpolation of the kept pixels
    (scipy griddata; nearest kept pixel outside their convex hull); super-resolution, upsampling of the
    measured low-resolution image (`mode`: bilinear, or bicubic, the stronger one)."""
    B, C, H, W = shape
    if not task.startswith("inpaint"):
        small = y.view(B, C, H // 4, W // 4)
        return F.interpolate(small, size=(H, W), mode=mode, align_corners=False).clamp(-1, 1)
    return linear_inpaint(y, physics.m).clamp(-1, 1)


def gaussian_posterior_mean(engine: Engine, crops: torch.Tensor) -> torch.Tensor:
    """The exact posterior mean (MMSE estimate) under the engine's prior (the Gaussian) of each crop's
    measurement (the one `measure` gives), (B, 3, H, W) on [-1, 1]: what DPS on that prior approximates. One
    crop at a time (dense d × d algebra, d = 3·H·W)."""
    out = []
    for b in range(crops.shape[0]):
        physics, y = engine.measure(to_signed(crops[b : b + 1]), batch_of(engine, crops[b : b + 1], [b], [0]))
        out.append(exact_posterior(engine.prior, physics, y, crops.shape[1:]).mean.float())
    return torch.cat(out)


def dps_samples(engine: Engine, crops: torch.Tensor, step_size, samples: int, indices=None) -> torch.Tensor:
    """`samples` DPS reconstructions per crop, (B, S, 3, H, W) on [-1, 1], for crops (B, 3, H, W) on [0, 1];
    `step_size` a number or one per crop (B,). Crop b is measured as image `indices[b]` (default b) of a run,
    so copies of a crop under one index share their operator and measurement, and sample s is its draw s."""
    B = crops.shape[0]
    indices = list(range(B)) if indices is None else indices
    zeta = torch.as_tensor(step_size, dtype=torch.float64).expand(B).repeat_interleave(samples)
    rows = [(b, s) for b in range(B) for s in range(samples)]
    batch = batch_of(engine, crops.repeat_interleave(samples, 0), [indices[b] for b, _ in rows],
                     [s for _, s in rows], zeta.tolist())  # fmt: skip
    return engine(batch).x.view(B, samples, *crops.shape[1:])


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
    try:
        dps = engines(names, args.tasks, args.steps, args.seed, args.crop)
    except (ConfigCompositionException, MissingConfigException) as err:
        p.error(f"--prior {args.prior}: {str(err).splitlines()[0]}")
    except UserError as err:
        p.error(str(err).splitlines()[0])
    args.out.mkdir(parents=True, exist_ok=True)
    (tune if args.tune else evaluate)(args, dps)


def tune(args, dps: dict[tuple[str, str], Engine]) -> None:
    """DPS on 8 crops other than the test crops (another random draw), for each prior's step sizes in
    --tune; every step size sees the same measurements and noise. Appends to tuning.jsonl."""
    crops, _ = heldout_crops(DEMO_PHOTOS, 2, args.side, args.crop, seed=args.seed + 1)
    with (args.out / "tuning.jsonl").open("a") as f:
        for task in args.tasks:
            for name, sizes in args.tune.items():
                tic = time.perf_counter()
                copies = crops.repeat(len(sizes), 1, 1, 1)
                zeta = torch.tensor(sizes).repeat_interleave(crops.shape[0])
                same = list(range(crops.shape[0])) * len(sizes)
                x_hat = dps_samples(dps[(name, task)], copies, zeta, 1, indices=same)
                scores = torch.tensor(score(x_hat[:, 0], copies)).view(len(sizes), -1).mean(1).tolist()
                for z, v in zip(sizes, scores, strict=True):
                    f.write(json.dumps({"task": task, "prior": name, "steps": args.steps, "step_size": z, "psnr": v}))
                    f.write("\n")
                shown = [f"{z:g}:{v:.2f}" for z, v in zip(sizes, scores, strict=True)]
                print(task, name, shown, f"{time.perf_counter() - tic:.0f}s", flush=True)


def evaluate(args, dps: dict[tuple[str, str], Engine]) -> None:
    """Every method on the test crops; writes results.jsonl (replacing an earlier one only once complete),
    TASK.pt and run.json."""
    chosen = best_step_sizes(args.out / "tuning.jsonl", args.steps) | args.step_size
    names = list(dict.fromkeys(name for name, _ in dps))
    for name, task in ((name, task) for task in args.tasks for name in names):
        if (name, task) not in chosen:
            raise SystemExit(f"error: no step size for {name} on {task}: run --tune first or pass --step-size")
    crops, labels = heldout_crops(DEMO_PHOTOS, args.per_image, args.side, args.crop, seed=args.seed)
    shape = crops.shape
    partial = args.out / "results.jsonl.partial"
    with partial.open("w") as f:

        def record(task, method, x_hat, sample, extra=None):
            for b, v in enumerate(score(x_hat, crops)):
                row = {"task": task, "method": method, "crop": b, "label": labels[b], "sample": sample, "psnr": v}
                f.write(json.dumps(row | (extra or {})) + "\n")

        for task in args.tasks:
            physics, y = measure(dps[("gaussian", task)], crops)  # the task's operator: the same for every prior
            saved = {"truth": crops, "measurement": to_unit(physics.to_image(y)), "labels": labels}
            saved["interpolation"] = interpolate(task, physics, y, shape)
            record(task, "interpolation", saved["interpolation"], "-")
            if not task.startswith("inpaint"):
                saved["bicubic"] = interpolate(task, physics, y, shape, "bicubic")
                record(task, "bicubic", saved["bicubic"], "-")
            if args.crop <= 32:  # dense d × d algebra: 64×64 crops would need ~1 GB per matrix
                saved["exact-gaussian"] = gaussian_posterior_mean(dps[("gaussian", task)], crops)
                record(task, "exact-gaussian", saved["exact-gaussian"], "mean")
            for name in names:
                zeta, tic = chosen[(name, task)], time.perf_counter()
                xs = dps_samples(dps[(name, task)], crops, zeta, args.samples)
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
