"""`python scripts/solver_table.py`: every sampler on the bundled photographs with the bundled prior, as a table.

The four photographs of `data=sample` (face, cat, coffee, rocket) at --size px, the bundled learned prior
`denoiser=natural32`, σ = 0.05, one draw per image: each sampler on each task it supports (its own check decides;
"–" where it refuses), scored by the run's metrics (--metrics; LPIPS needs its VGG backbone in the torch hub cache:
add `lpips` where it is). All through the run's engine (`dps_exp.run.testbed`), so each cell is what
`python -m dps_exp.run denoiser=natural32 data=sample data.limit=null data.size=SIZE sampler=… physics=…` with the
same settings gives. Steps are modest, to run in minutes on a CPU: --steps for the diffusion samplers (DDRM: at
most its own 20), each iterative solver's own default count unless --iterations. DPS runs at two step sizes ζ
(--step-sizes): the best ζ differs by task and is not tuned here.

Prints the Markdown table (rows: sampler and setting; columns: tasks; cells: the metrics' means over the images)
and writes it with results.jsonl (one line per sampler, setting, task and image) into --out.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from hydra.errors import HydraException

from dps_exp.analysis.report import to_markdown
from dps_exp.errors import ConfigError, UserError
from dps_exp.run.testbed import Bed, names, numbers, positive

TASKS = {
    "inpaint": ["physics=inpaint_random", "physics.mask=0.2"],  # as the demo and docs/priors.md
    "sr": ["physics=super_resolution", "physics.factor=4"],
    "blur": ["physics=gaussian_blur"],  # the paper's: 61 px, σ = 3
    "denoise": ["physics=denoise"],
    "phase": ["physics=phase_retrieval"],
}
DIFFUSION = ("dps", "score_sde", "mcg", "ddrm")
"""Samplers whose cost is `sampler.steps`; the rest count `sampler.iterations`."""
FIXED = {
    # natural32 has no learned variance: the tutorial's DDIM(η = 1) update
    "score_sde": ["sampler.variance=eta"],
    "mcg": ["sampler.variance=eta"],
    "ddrm": ["sampler.clip=true"],  # natural32's 20-step samples leave the image range unclipped (ddrm.py)
}
SAMPLERS = ["dps", "score_sde", "mcg", "ddrm", "pnp_admm", "admm_tv", "er", "hio", "oss"]


def rows_of(args) -> list[tuple[str, list[str]]]:
    """(label, overrides) of each table row."""
    out = []
    for sampler in args.samplers:
        extra = [f"sampler={sampler}", *FIXED.get(sampler, [])]
        if sampler in DIFFUSION:
            steps = min(args.steps, 20) if sampler == "ddrm" else args.steps
            extra.append(f"sampler.steps={steps}")
            label = f"{sampler}, {steps} steps"
        else:
            extra += [f"sampler.iterations={args.iterations}"] if args.iterations else []
            label = f"{sampler}" + (f", {args.iterations} iterations" if args.iterations else "")
        if sampler == "dps":
            out += [(f"{label}, ζ = {z:g}", [*extra, f"sampler.step_size={z}"]) for z in args.step_sizes]
        else:
            out.append((label, extra))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("outputs/solver_table"))
    p.add_argument("--size", type=positive, default=64, help="image side, px (natural32 halves it twice)")
    p.add_argument("--images", type=positive, default=4, help="the first N of face, cat, coffee, rocket")
    p.add_argument("--tasks", type=names(list(TASKS)), default=list(TASKS))
    p.add_argument("--samplers", type=names(SAMPLERS), default=SAMPLERS)
    p.add_argument("--steps", type=positive, default=50, help="diffusion samplers' steps (DDRM: at most 20)")
    p.add_argument("--iterations", type=positive, help="the iterative solvers' count (default: each one's own)")
    p.add_argument("--step-sizes", type=numbers, default="2,8", help="DPS's ζ values, one row each")
    p.add_argument("--metrics", type=names(["psnr", "ssim", "lpips"]), default=["psnr", "ssim"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. physics.noise.sigma=0.1")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    base = ["denoiser=natural32", "data=sample", f"data.limit={args.images}", f"data.size={args.size}",
            f"metrics.names=[{','.join(args.metrics)}]", f"seed={args.seed}", *args.overrides]  # fmt: skip
    rows = rows_of(args)
    cells: dict[tuple[str, str], str] = {}
    nfe: dict[str, int] = {}
    refused: dict[str, dict[str, str]] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "results.jsonl").open("w") as out:
        for task in args.tasks:
            try:  # DPS runs every task: what it cannot run is the caller's mistake, not a sampler's refusal
                reference = Bed.build([*base, *TASKS[task], "sampler=dps"])
                beds = [Bed.build([*base, *TASKS[task], *extra], check=False, like=reference) for _, extra in rows]
            except (UserError, HydraException) as err:
                p.error(f"{task}: {str(err).splitlines()[0]}")
            for (label, _), bed in zip(rows, beds, strict=True):
                try:
                    bed.check()
                except ConfigError as err:
                    cells[label, task] = "–"
                    # one reason per sampler (the first task's): the others differ only in the operator's name
                    refused.setdefault(label.split(",")[0], {})[task] = str(err).splitlines()[0]
                    continue
                _, result = bed.draws(1)
                means = {k: sum(v) / len(v) for k, v in result.scores.items()}
                cells[label, task] = " / ".join(f"{means[k]:.2f}" if k == "psnr" else f"{means[k]:.3f}" for k in means)
                nfe[label] = result.nfe[0]
                for b in range(len(result.nfe)):
                    line = {"sampler": label, "task": task, "image": b, "nfe": result.nfe[b], "seconds": result.seconds,
                            **{k: v[b] for k, v in result.scores.items()}}  # fmt: skip
                    out.write(json.dumps(line) + "\n")
                print(f"{task} {label}: {cells[label, task]} ({result.seconds:.0f}s)", flush=True)
    header = ["sampler", "NFE", *(f"{t}: {' / '.join(m.upper() for m in args.metrics)}" for t in args.tasks)]
    table = [[label, nfe.get(label, "–"), *(cells[label, t] for t in args.tasks)] for label, _ in rows]
    text = to_markdown(header, table)
    if refused:
        text += "\nNot run (the sampler's own check): " + "; ".join(
            f"{k} on {', '.join(v)} ({next(iter(v.values()))})" for k, v in refused.items()
        )
        text += "\n"
    (args.out / "table.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
