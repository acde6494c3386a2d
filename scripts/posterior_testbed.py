"""`python scripts/posterior_testbed.py`: how far DPS samples fall from the exact posterior, against step size.

On a prior whose posterior is known exactly (`--prior gmm` or `gaussian`), with ground truth drawn from the
prior (`data=prior_samples`), each image is measured once and DPS draws --samples samples for each step size
(all in one batch: step size is a per-sample parameter). Each (image, step size, eta) is scored with
dps_exp.metrics.posterior against the exact posterior, and by PSNR against the truth next to the exact
posterior mean's and an exact sample's. One JSON line each in --out/results.jsonl, which each run writes anew
(a rerun into the same --out replaces the rows, it does not add to them: give each setting its own --out, or
several --etas and --step-sizes to one run); scripts/prior_docs.py plots them.

Measuring, sampling and scoring go through the run's engine (`dps_exp.run.engine.Engine`) and the set is scored
with the run's `posterior` stream, so each row's draws and scores are those of `python -m dps_exp.run` with the
same settings and `samples=--samples` (its `psnr_of_mean`, `mean_rmse`, `sliced_w2`, `coverage`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from hydra.errors import HydraException

from dps_exp.denoisers.exact import exact_posterior
from dps_exp.errors import UserError
from dps_exp.metrics.image import psnr
from dps_exp.run.engine import to_unit
from dps_exp.run.testbed import Bed, numbers, positive


def overrides_for(args) -> list[str]:
    """The run config of this test bed (`Bed.build` checks it as a run checks its own: ranges, the images' fit
    to the prior; a bad value stops it with the run's one-line message)."""
    return [
        f"denoiser={args.prior}",
        "data=prior_samples",
        f"data.count={args.images}",
        f"data.size={args.size}",
        "physics=inpaint_random",
        f"physics.mask={args.mask}",
        f"physics.noise.sigma={args.sigma}",
        f"sampler.steps={args.steps}",
        f"sampler.eta=[{','.join(map(str, args.etas))}]",
        f"sampler.step_size=[{','.join(map(str, args.step_sizes))}]",
        f"seed={args.seed}",
        "metrics.names=[psnr]",  # SSIM's 11-pixel window does not fit 8×8 images
        *args.overrides,
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="default: outputs/testbed/PRIOR")
    p.add_argument("--prior", default="gmm", choices=["gmm", "gaussian"])
    p.add_argument("--images", type=positive, default=8)
    p.add_argument("--size", type=int, default=8, help="image side (the GMM's own: denoiser.image_size)")
    p.add_argument("--mask", type=float, default=0.2, help="fraction of pixels kept")
    p.add_argument("--sigma", type=float, default=0.05)
    p.add_argument("--samples", type=positive, default=16, help="DPS samples per image and step size")
    p.add_argument("--steps", type=positive, default=200)
    p.add_argument("--etas", type=numbers, default="1.0")
    p.add_argument("--step-sizes", type=numbers, default="0.1,0.2,0.5,1,2,5,10,20,50")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", help="further config overrides, e.g. denoiser.components=8")
    args = p.parse_args(argv)
    args.out = args.out or Path("outputs/testbed") / args.prior
    sizes = args.step_sizes
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    try:
        # eta and step size (lists of any lengths here, not zipped) are set per row
        bed = Bed.build(overrides_for(args), {"sampler.eta": args.etas[0], "sampler.step_size": sizes[0]})
    except (UserError, HydraException) as err:
        p.error(str(err).splitlines()[0])
    args.out.mkdir(parents=True, exist_ok=True)
    truth = bed.truth  # (B, C, H, W), [0, 1] scale (unclipped)
    B, S = truth.shape[0], args.samples
    physics, y = bed.measure()
    exact = exact_posterior(bed.prior, physics, y, truth.shape[1:])
    exact_sample = exact.sample(1, torch.Generator().manual_seed(args.seed))[:, 0].float()
    reference = {
        "exact_mean": psnr(to_unit(exact.mean.float()), truth).tolist(),
        "exact_sample": psnr(to_unit(exact_sample), truth).tolist(),
    }

    # one batch per eta: image b × step size z × draw s, draw-major inside, so each (b, z) is S rows together
    with (args.out / "results.jsonl").open("w") as f:
        for eta in args.etas:
            xs, result = bed.draws(S, [{"sampler.eta": eta, "sampler.step_size": size} for size in sizes])
            diverged = torch.tensor(result.diverged_at).view(B, len(sizes), S)
            psnr_draws = torch.tensor(result.scores["psnr"]).view(B, len(sizes), S)
            for b in range(B):
                for z, size in enumerate(sizes):
                    m = bed.score(xs[b, z], exact, b)  # as a run scores its set
                    row = {
                        "prior": args.prior,
                        "mask": args.mask,
                        "sigma": args.sigma,
                        "steps": args.steps,
                        "eta": eta,
                        "step_size": size,
                        "image": b,
                        "samples": S,
                        "diverged": int((diverged[b, z] >= 0).sum()),
                        **m,
                        "psnr_sample": psnr_draws[b, z].mean().item(),
                        "psnr_mean": psnr(to_unit(xs[b, z].mean(0, keepdim=True)), truth[b][None]).item(),
                        "psnr_exact_mean": reference["exact_mean"][b],
                        "psnr_exact_sample": reference["exact_sample"][b],
                        "seconds": result.seconds,
                        "overrides": args.overrides,
                    }
                    f.write(json.dumps(row) + "\n")
            print(
                f"{args.prior} eta={eta}: {B * len(sizes) * S} samples × {args.steps} steps in {result.seconds:.0f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()
