"""The cases of scripts/bench.py beside the step benchmark: every sampler's cost per sample (`--samplers`), a sweep
of η × step size vectorized against sequential (`--sweep`) and a sweep over step counts run three ways
(`--continuous`). All go through the run's own code (the Engine; the Run; the CLI), so their figures are what
`python -m dps_exp.run` spends."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

SAMPLER_TASKS = {
    "dps": ("inpaint_random", "steps"),
    "score_sde": ("inpaint_random", "steps"),
    "mcg": ("inpaint_random", "steps"),
    "ddrm": ("super_resolution", "steps"),
    "pnp_admm": ("super_resolution", "iterations"),
    "admm_tv": ("super_resolution", None),
    "er": ("phase_retrieval", None),
    "hio": ("phase_retrieval", None),
    "oss": ("phase_retrieval", None),
}
"""Each sampler's task (one it supports: the paper's inpainting for the DPS family, super-resolution ×4 for the
linear solvers, phase retrieval for the alternating projections) and the key `--steps` sets (its network
evaluations); None: no network, run at its config's iterations."""


def samplers_main(args, name: str) -> None:
    """The sampler table: each option combination builds the prior once and times every sampler with it."""
    from bench import configurations

    names = list(SAMPLER_TASKS) if "all" in args.samplers else list(dict.fromkeys(args.samplers))
    rows = []
    for cfg in configurations(args):
        if cfg["loop"] == "tutorial":
            continue
        for r in sampler_rows({**cfg, "samplers": names}):
            rows.append(r)
            print(f"{r['sampler']:9s} batch {r['batch']:2d} {r['precision']}: {r['s_per_sample']:.4f} s per sample, "
                  f"NFE {r['nfe']}", file=sys.stderr, flush=True)  # fmt: skip
            if args.out:  # as each finishes, so a run cut short keeps what it measured
                with args.out.open("a") as f:
                    f.write(json.dumps({**r, "device_name": name}) + "\n")
    print(sampler_table(rows, name))


def sampler_rows(cfg: dict) -> Iterator[dict]:
    """Time each sampler of `cfg['samplers']` in this process, one frozen prior for all: a warm-up batch, then
    the best of `repeats` batches of `batch` random images through the engine (measure, sample, PSNR). Yields each
    sampler's row as it is measured."""
    from bench import engine_batch, frozen_prior, sync  # (bench.py imports this module: not at the top)

    from dps_exp.run.cli import compose

    torch.set_num_threads(cfg["threads"])
    prior, schedule = frozen_prior(cfg)
    for name in cfg["samplers"]:
        physics, knob = SAMPLER_TASKS[name]
        task = [f"sampler={name}", f"physics={physics}"]
        one_batch = engine_batch(prior, schedule, cfg, [*task, *([f"sampler.{knob}={cfg['steps']}"] if knob else [])])
        if cfg["warmup"]:
            one_batch()  # first kernels, the operator's set-up (an SVD, FFT plans)
        times = []
        for _ in range(cfg["repeats"]):
            sync(cfg["device"])
            tic = time.perf_counter()
            result = one_batch()
            sync(cfg["device"])
            times.append(time.perf_counter() - tic)
        nfe = result.nfe[0]
        per_sample = min(times) / cfg["batch"]
        # at the config's own step count (NFE scales with it; the rest of a batch's cost is a small constant)
        default = compose(task)["sampler"][knob] * nfe / cfg["steps"] if knob else nfe
        yield {**cfg, "sampler": name, "physics": physics, "knob": knob, "nfe": nfe, "s_per_sample": per_sample,
               "s_per_nfe": per_sample / nfe if nfe else None, "default_nfe": default,
               "s_per_sample_default": per_sample * default / nfe if nfe else per_sample}  # fmt: skip


def sampler_table(rows: list[dict], device_name: str) -> str:
    """Markdown: each sampler's task, what it ran, NFE, seconds per sample and per network evaluation."""
    r0 = rows[0]
    lines = [
        f"Device: {device_name}. Each sampler through the run's engine (measure, sample, PSNR), {r0['arch']} UNet "
        f"architecture with random weights, {r0['size']}×{r0['size']}, best of {r0['repeats']} batches.",
        "",
        "| sampler | task | batch | precision | ran | NFE per sample | s per sample | s per NFE "
        "| config's NFE | s per sample at the config's NFE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ran = f"{r['knob']}={r['steps']}" if r["knob"] else "its config"
        per_nfe = f"{r['s_per_nfe']:.4f}" if r["s_per_nfe"] is not None else "– (no network)"
        lines.append(
            f"| {r['sampler']} | {r['physics']} | {r['batch']} | {r['precision']} | {ran} | {r['nfe']} "
            f"| {r['s_per_sample']:.4f} | {per_nfe} | {r['default_nfe']:.0f} | {r['s_per_sample_default']:.2f} |"
        )
    return "\n".join(lines)


def sweep_grid(k: int) -> tuple[list[float], list[float]]:
    """η and step-size values whose grid has k points (as square as possible)."""
    a = max(d for d in range(1, int(k**0.5) + 1) if k % d == 0)
    etas = [round(0.25 + 0.75 * i / max(a - 1, 1), 3) for i in range(a)]
    sizes = [round(0.3 * 2**i, 3) for i in range(k // a)]
    return etas, sizes


def sweep_bench(args) -> str:
    """Wall time of a K-point sweep over N images, vectorized against sequential, through the CLI."""
    from bench import ROOT, cpu_name

    k, n = args.sweep
    etas, sizes = sweep_grid(k)
    common = [
        "denoiser=random_adm", f"denoiser.architecture={args.arch}", "data.limit=null" if n > 4 else f"data.limit={n}",
        f"data.size={args.size}", f"data.batch_size={k * n}", f"sampler.steps={args.steps}", "logger=none",
        "progress=false", f"device={args.device}", f"precision={args.precision[-1]}",
        f"sampler.eta={','.join(map(str, etas))}", f"sampler.step_size={','.join(map(str, sizes))}",
    ]  # fmt: skip
    times, sampling = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("true", "false"):
            cmd = [sys.executable, "-m", "dps_exp.run", "-m", *common, f"hydra.sweeper.vectorize={mode}",
                   f"hydra.sweep.dir={tmp}/{mode}"]  # fmt: skip
            tic = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            times[mode] = time.perf_counter() - tic
            if proc.returncode != 0:
                raise SystemExit(f"sweep failed:\n{proc.stderr[-3000:]}")
            # Each row holds its share of its batch's measure + sample + score time: their sum is the sweep's
            # time in the loop, without start-up (imports, network build, first-step kernel selection).
            rows = [json.loads(line) for f in Path(tmp, mode).rglob("results.jsonl") for line in f.read_text().splitlines()]  # fmt: skip
            sampling[mode] = sum(r["seconds"] for r in rows)
    name = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    return (
        f"Device: {name}. Sweep of {k} points (η {etas} × step size {sizes}) × {n} image(s), "
        f"{args.size}×{args.size}, {args.steps} steps, {args.arch} UNet with random weights, {args.precision[-1]}.\n\n"
        "| sweep | jobs | wall time (s) | × sequential | sampling (s) | × sequential |\n|---|---|---|---|---|---|\n"
        f"| sequential | {k} | {times['false']:.1f} | 1.00 | {sampling['false']:.1f} | 1.00 |\n"
        f"| vectorized | 1 | {times['true']:.1f} | {times['false'] / times['true']:.2f} | {sampling['true']:.1f} "
        f"| {sampling['false'] / sampling['true']:.2f} |"
    )


ETAS = (0.5, 1.0)
"""The heterogeneous sweep's two η values."""


def ways(steps: list[int]) -> dict[str, list[list[str]]]:
    """The steps × η sweep as each way runs it: its jobs, each a list of overrides.

    continuous: one job listing every point (chains of different lengths: the Run batches continuously);
    packed per steps: one job per step count holding both η (its chains are alike: walked in step);
    sequential: one job per point (Hydra's basic sweeper)."""
    grid = list(itertools.product(steps, ETAS))
    return {
        "continuous": [[f"sampler.steps=[{','.join(str(s) for s, _ in grid)}]",
                        f"sampler.eta=[{','.join(str(e) for _, e in grid)}]"]],
        "packed per steps": [[f"sampler.steps={s}", f"sampler.eta=[{','.join(map(str, ETAS))}]"] for s in steps],
        "sequential": [[f"sampler.steps={s}", f"sampler.eta={e}"] for s, e in grid],
    }  # fmt: skip


def run_jobs(common: list[str], jobs: list[list[str]], out: Path) -> dict:
    """Run the jobs one after another in this process, as a multirun does; their wall time (compose, build,
    execute), their time in the loop (the rows' seconds), how their batches ran, and each row's metrics keyed by
    (image, steps, η)."""
    from dps_exp.run.cli import compose
    from dps_exp.run.experiment import Run

    tic, modes = time.perf_counter(), set()
    for k, overrides in enumerate(jobs):
        run = Run(compose([*common, *overrides]), out / str(k))
        modes.add("continuous" if run.engine.continuous([p.values for p in run.points]) else "in step")
        run.execute()
    wall = time.perf_counter() - tic
    rows = [json.loads(line) for f in sorted(out.rglob("results.jsonl")) for line in f.read_text().splitlines()]
    keys = [(r["index"], r["point"]["sampler.steps"], r["point"]["sampler.eta"]) for r in rows]
    metrics = {key: r["metrics"] for key, r in zip(keys, rows, strict=True)}
    done = {key: (r["status"], r["nfe"]) for key, r in zip(keys, rows, strict=True)}
    return {"jobs": len(jobs), "wall": wall, "loop": sum(r["seconds"] for r in rows), "modes": modes,
            "metrics": metrics, "done": done, "batch": run.speed.batch_size, "precision": run.speed.precision}  # fmt: skip


def same_rows(results: dict[str, dict]) -> dict[str, list[float]]:
    """Stop unless every way recorded the rows of the sequential way: the same (image, steps, η), each with the same
    status and NFE. Returns each way's |ΔPSNR| against sequential, row by row (rounding that differs with the batch
    grows along a chain: ≈ 1e-6 of x at 10 steps, 1e-4 at 50, 3e-3 at 100 on this CPU's natural32 prior)."""
    reference, drift = results["sequential"], {}
    for way, res in results.items():
        if res["done"] != reference["done"]:
            raise SystemExit(
                f"error: {way} recorded {sorted(res['done'].items())}, sequential {sorted(reference['done'].items())}"
            )
        drift[way] = [abs(m["psnr"] - reference["metrics"][key]["psnr"]) for key, m in res["metrics"].items()]
    return drift


def continuous_bench(args, device_name: str) -> str:
    """Time the steps × η sweep over `args.continuous` image(s) three ways; check the three give the same rows."""
    torch.set_num_threads(args.threads)
    steps = list(dict.fromkeys(max(1, round(s / args.scale)) for s in args.chain_steps))  # distinct, ≥ 1
    denoiser = ["denoiser=natural32"] if args.denoiser == "natural32" else [
        "denoiser=random_adm", f"denoiser.architecture={args.arch}"]  # fmt: skip
    precision = args.precision[-1] if args.precision else "auto"
    common = [*denoiser, f"data.limit={args.continuous}", f"data.size={args.size}", f"device={args.device}",
              f"precision={precision}", "metrics.names=[psnr]", "logger=none", "progress=false"]  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_jobs(common, [["sampler.steps=1"]], Path(tmp, "warm-up"))  # first kernels, lazy imports: not timed
        for way, jobs in ways(steps).items():
            results[way] = run_jobs(common, jobs, Path(tmp, way))
    drift = same_rows(results)
    reference = seq = results["sequential"]
    scaled = f" (the sweep's {args.chain_steps} divided by {args.scale:g})" if args.scale != 1 else ""
    lines = [
        f"Device: {device_name}. Sweep sampler.steps={steps}{scaled} × sampler.eta={list(ETAS)}, "
        f"{args.continuous} image(s), {args.size}×{args.size}, {' '.join(denoiser)}, precision={precision} "
        f"({results['continuous']['precision']}), data.batch_size=auto ({results['continuous']['batch']}), "
        "each way's jobs one after another in one process (as a multirun).",
        f"Same rows: every way recorded the same {len(reference['done'])} (image, steps, η) rows, each with the "
        "same status and NFE; PSNR against sequential, largest and mean |Δ|: "
        + "; ".join(f"{w} {max(d):.2e} and {sum(d) / len(d):.2e} dB" for w, d in drift.items() if w != "sequential")
        + ".",
        "",
        "| way | jobs | batches | wall time (s) | × sequential | in the loop (s) | × sequential |",
        "|---|---|---|---|---|---|---|",
    ]
    for way, res in results.items():
        lines.append(f"| {way} | {res['jobs']} | {', '.join(sorted(res['modes']))} | {res['wall']:.1f} "
                     f"| {seq['wall'] / res['wall']:.2f} | {res['loop']:.1f} | {seq['loop'] / res['loop']:.2f} |")  # fmt: skip
    return "\n".join(lines)
