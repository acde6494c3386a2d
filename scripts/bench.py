"""Speed of one DPS step: our sampler against the tutorial's loop driving deepinv's DiffUNet.

Both run the FFHQ architecture with the same random weights (copied from deepinv's DiffUNet into ours) on
random inpainting. "tutorial" is the loop of the seed tutorial as written (fp32, weights not frozen, the
noise-level interface with its timestep search, a copy of each iterate to the CPU); "ours" is the run's
engine (measure → `DPS.sample` → PSNR, as `python -m dps_exp.run` runs a batch) with frozen weights and the
chosen speed options. Each configuration runs in its own process
(clean peak memory, no compile cache shared). Prints a Markdown table; `--out` appends JSON lines.

    python scripts/bench.py --size 64 --batch 1 4 --precision fp32 bf16 --steps 5          # CPU here
    python scripts/bench.py --device cuda --size 256 --batch 1 8 16 --precision fp32 bf16 --compile off on
    python scripts/bench.py --device cuda --batch 1 --tutorial-batch --compile graphs     # CUDA graphs, no tutorial row

`--arch tiny` is a two-level ADM UNet (no tutorial counterpart: give `--tutorial-batch` nothing) for checking the
plumbing in seconds, compilation included (`scripts/gpu_check.sh`'s CPU dry run).

The sweep case (`--sweep K N`) times a K-point multirun (η × step size) over N images run through the CLI, once
vectorized (all points packed into one job: one network pass per step for all) and once sequentially (K jobs),
with `denoiser=random_adm` (random weights: timing only):

    python scripts/bench.py --sweep 4 1 --size 64 --steps 5                              # CPU here
    python scripts/bench.py --sweep 16 1 --device cuda --size 256 --steps 100

Two more cases live in scripts/bench_cases.py. `--samplers` times every sampler (or the ones named) on a task it
supports, through the engine, in this process with one network for all: seconds per sample and per network
evaluation, NFE (`--steps` sets the steps of the samplers that call the network; the others run their config):

    python scripts/bench.py --samplers all --arch ffhq --size 64 --batch 1 4 --precision fp32 --threads 1   # CPU
    python scripts/bench.py --samplers all --device cuda --size 256 --batch 1 16 --precision fp32

`--continuous N` runs sampler.steps=50,100,250,500,1000 (`--chain-steps`, divided by `--scale`) × η 0.5, 1 on N
of the bundled images three ways (continuous batching, packed per step count, sequential), each way's jobs in this
process as a multirun, and checks that the three record the same rows:

    python scripts/bench.py --continuous 2 --denoiser natural32 --size 32 --scale 10 --threads 1    # CPU here
    python scripts/bench.py --continuous 1 --device cuda --size 256 --scale 5

On a shared CPU give `--threads 1`: two threads waiting on each other under others' load ran a step 10-30× slower.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from bench_cases import SAMPLER_TASKS, continuous_bench, samplers_main, sweep_bench

ROOT = Path(__file__).resolve().parents[1]


TINY = dict(image_size=32, model_channels=32, channel_mult=(1, 2), attention_resolutions=(16,), num_head_channels=32)
"""`--arch tiny`: the ADM UNet's parts (GroupNorm, attention, learned variance) at a size that compiles in seconds."""


def build_models(arch: str, device: str):
    """deepinv's DiffUNet with seeded random weights, and our ADMUNet holding a copy of them (`tiny`: ours only,
    seeded, and None for deepinv's).

    PyTorch's default initialisation keeps activations O(1) like trained weights do (uniformly tiny random
    weights would shrink them into denormal floats, which run many times slower on CPUs); the layers
    guided-diffusion initialises to zero get small random values so that every layer does real work.
    """
    from dps_exp.denoisers.adm import ARCHITECTURES, ADMConfig, ADMUNet

    torch.manual_seed(0)
    if arch == "tiny":
        return None, ADMUNet(ADMConfig(**TINY)).to(device).eval()
    from deepinv.models import DiffUNet

    ref = DiffUNet(large_model=arch == "imagenet", pretrained=None)
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("sqrt_")}
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=gen) * 1e-2 if not v.any() else v for k, v in state.items()}
    ref.load_state_dict(state, strict=False)
    ours = ADMUNet(ARCHITECTURES[arch])
    ours.load_state_dict(state)
    return ref.to(device).eval(), ours.to(device).eval()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def tutorial_steps(model, batch: int, size: int, steps: int, device: str) -> None:
    """The tutorial's loop body (seed_tutorial_demo_dps.rst), 200-step stride, as written there."""
    import deepinv as dinv
    from deepinv.optim.data_fidelity import L2

    physics = dinv.physics.Inpainting(img_size=(3, size, size), mask=0.1, pixelwise=True, device=device)
    data_fidelity = L2()
    betas = torch.linspace(1e-4, 2e-2, 1000).to(device)
    alphas = (1 - betas).cumprod(dim=0)
    skip, eta = 1000 // 200, 1.0
    y = physics(torch.rand(batch, 3, size, size, device=device) * 2 - 1)
    xs = [torch.randn(batch, 3, size, size, device=device)]
    for t in list(reversed(range(0, 1000, skip)))[:steps]:
        at = alphas[t]
        at_next = alphas[t - skip] if t - skip >= 0 else torch.tensor(1)
        bt = 1 - at / at_next
        xt = xs[-1].to(device)
        with torch.enable_grad():
            xt.requires_grad_()
            aux_x = xt / (2 * at.sqrt()) + 0.5
            sigma_cur = (1 - at).sqrt() / at.sqrt()
            x0_t = 2 * model(aux_x, sigma_cur / 2) - 1
            x0_t = torch.clip(x0_t, -1.0, 1.0)
            l2_loss = data_fidelity(x0_t, y, physics).sqrt().sum()
        norm_grad = torch.autograd.grad(outputs=l2_loss, inputs=xt)[0].detach()
        sigma_tilde = (bt * (1 - at_next) / (1 - at)).sqrt() * eta
        c2 = ((1 - at_next) - sigma_tilde**2).sqrt()
        epsilon = torch.randn_like(xt)
        xt_next = (
            (at_next.sqrt() - c2 * at.sqrt() / (1 - at).sqrt()) * x0_t
            + sigma_tilde * epsilon
            + c2 * xt / (1 - at).sqrt()
            - norm_grad
        )
        xs.append(xt_next.to("cpu"))


def engine_batch(prior, schedule, cfg: dict, overrides: list[str]):
    """A function that runs one batch of `cfg['batch']` random images through the run's engine (measure, sample,
    PSNR) with the config these `overrides` compose, as the CLI composes it (here, outside the timed region);
    it returns the engine's `BatchResult`."""
    from dps_exp.config import build
    from dps_exp.run.cli import compose
    from dps_exp.run.engine import Batch, Engine
    from dps_exp.run.points import expand
    from dps_exp.run.settings import per_sample_of

    spec = compose([
        *overrides, "metrics.names=[psnr]", "denoiser=random_adm", f"data.size={cfg['size']}",
        f"data.batch_size={cfg['batch']}", f"device={cfg['device']}", f"precision={cfg['precision']}",
        f"compile={cfg['compile']}", f"channels_last={cfg['channels_last']}", "logger=none", "progress=false",
    ])  # fmt: skip
    engine = Engine(spec, schedule, prior, build(spec["metrics"]), torch.device(cfg["device"]))
    batch = cfg["batch"]
    values = {k: [v] * batch for k, v in expand(spec, per_sample_of(spec))[0].items()}
    engine.check((3, cfg["size"], cfg["size"]), {k: v[0] for k, v in values.items()})

    def one_batch():
        return engine(Batch(torch.rand(batch, 3, cfg["size"], cfg["size"]), values, range(batch), [0] * batch))

    return one_batch


def our_steps(prior, schedule, cfg: dict, steps: int):
    """The product's loop: one batch through the run's engine, `steps` DPS steps (DDIM η=1 as the tutorial) on
    random inpainting keeping 10% (the tutorial's)."""
    return engine_batch(prior, schedule, cfg, ["physics=inpaint_random", "physics.mask=0.1", f"sampler.steps={steps}"])


def frozen_prior(cfg: dict):
    """The schedule and the benchmark's network (`build_models`) as a frozen prior with `cfg`'s speed options."""
    from dps_exp.denoisers.base import NetworkDenoiser
    from dps_exp.schedule import LinearSchedule

    torch.backends.cudnn.benchmark = cfg["cudnn_benchmark"]  # time cuDNN's algorithms once per shape, keep the best
    _, net = build_models(cfg["arch"], cfg["device"])
    schedule = LinearSchedule().to(cfg["device"])

    class Prior(NetworkDenoiser):
        learned_variance = True

    prior = Prior(schedule, net).to(cfg["device"]).eval().requires_grad_(False)
    prior.accelerate(cfg["precision"], cfg["compile"], cfg["channels_last"])
    return prior, schedule


def run_one(cfg: dict) -> dict:
    """Time one configuration in this process."""
    device, batch, size, steps = cfg["device"], cfg["batch"], cfg["size"], cfg["steps"]
    torch.set_num_threads(cfg["threads"])
    if cfg["loop"] == "tutorial":
        ref, _ = build_models(cfg["arch"], device)

        def go(n):
            tutorial_steps(ref, batch, size, n, device)

    else:
        prior, schedule = frozen_prior(cfg)
        loops = {n: our_steps(prior, schedule, cfg, n) for n in {cfg["warmup"], steps} if n > 0}  # n-step runs

        def go(n):
            if n > 0:
                loops[n]()

    warm = time.perf_counter()
    go(cfg["warmup"])  # includes torch.compile's compilation when on
    sync(device)
    warm = time.perf_counter() - warm
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(cfg["repeats"]):
        sync(device)
        tic = time.perf_counter()
        go(steps)
        sync(device)
        times.append((time.perf_counter() - tic) / steps)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {**cfg, "s_per_step": min(times), "warmup_s": warm, "peak_mb": peak}


def configurations(args) -> list[dict]:
    base = dict(
        device=args.device, size=args.size, steps=args.steps, arch=args.arch, threads=args.threads,
        warmup=args.warmup, repeats=args.repeats,
    )  # fmt: skip
    configs = [
        {**base, "loop": "tutorial", "batch": b, "precision": "fp32", "compile": False, "channels_last": False,
         "cudnn_benchmark": False}
        for b in args.tutorial_batch
    ]  # fmt: skip
    options = itertools.product(args.batch, args.precision, args.compile, args.channels_last, args.cudnn_benchmark)
    for b, p, c, cl, cb in options:
        configs.append(
            {**base, "loop": "ours", "batch": b, "precision": p, "compile": COMPILE[c], "channels_last": cl == "on",
             "cudnn_benchmark": cb == "on"}
        )  # fmt: skip
    return configs


COMPILE = {"off": False, "on": True, "graphs": "graphs"}
"""`--compile` as `accelerate` takes it: graphs is torch.compile's mode="reduce-overhead" (CUDA graphs)."""


def shown(value) -> str:
    """A table cell for an option: on/off, or its name."""
    return value if isinstance(value, str) else "on" if value else "off"


def table(results: list[dict], device_name: str) -> str:
    """Markdown: each row's time, and its speed-up over the tutorial's loop at the same batch and per image
    against the tutorial at batch 1 (what a researcher running it image by image gets)."""
    tutorial = {r["batch"]: r["s_per_step"] for r in results if r["loop"] == "tutorial"}

    def ratio(reference, value):
        return f"{reference / value:.2f}" if reference else "–"

    lines = [
        f"Device: {device_name}. One DPS step (forward + input-gradient backward + update), "
        f"{results[0]['arch']} UNet architecture, {results[0]['size']}×{results[0]['size']}, random weights.",
        "",
        "| loop | batch | precision | compile | channels_last | cudnn.benchmark | s/step | s/step per image "
        "| peak MB | warm-up s | × tutorial, same batch | × tutorial per image |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        per_image = r["s_per_step"] / r["batch"]
        onoff = [shown(r.get(k)) for k in ("compile", "channels_last", "cudnn_benchmark")]
        lines.append(
            f"| {r['loop']} | {r['batch']} | {r['precision']} | {onoff[0]} | {onoff[1]} | {onoff[2]} | {r['s_per_step']:.4f} "
            f"| {per_image:.4f} | {r['peak_mb']:.0f} | {r['warmup_s']:.1f} | {ratio(tutorial.get(r['batch']), r['s_per_step'])} "
            f"| {ratio(tutorial.get(1), per_image)} |"
        )
    ours = [r for r in results if r["loop"] == "ours"]
    if ours:
        best = min(ours, key=lambda r: r["s_per_step"] / r["batch"])
        lines += [
            "",
            f"Best per image: batch {best['batch']}, {best['precision']}, compile "
            f"{shown(best['compile'])}: {1000 * best['s_per_step'] / best['batch']:.1f} s per image "
            "for 1000 steps. (Warm-up: the first steps, compilation included.)",
        ]
    return "\n".join(lines)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number, at least 1")
    return int(text)


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--arch", default="ffhq", choices=["ffhq", "imagenet", "tiny"])
    parser.add_argument("--size", type=positive, default=64, help="image side, a multiple of 32 (the UNet's)")
    parser.add_argument("--batch", type=positive, nargs="+", default=[1, 4])
    parser.add_argument("--tutorial-batch", type=positive, nargs="*", default=[1], help="none: no tutorial row")
    parser.add_argument(
        "--precision", nargs="+", choices=["fp32", "bf16"], help="default: fp32 and bf16 (--continuous: the run's auto)"
    )
    parser.add_argument("--compile", nargs="+", default=["off"], choices=list(COMPILE))
    parser.add_argument("--channels-last", nargs="+", default=["on"], choices=["on", "off"])
    parser.add_argument("--cudnn-benchmark", nargs="+", default=["off"], choices=["on", "off"])
    parser.add_argument("--steps", type=positive, default=5, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=positive, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, help="append JSON lines here")
    parser.add_argument("--sweep", type=int, nargs=2, metavar=("K", "N"), help="time a K-point sweep over N images")
    parser.add_argument(
        "--samplers",
        nargs="+",
        choices=[*SAMPLER_TASKS, "all"],
        help="time these samplers (all: every one) on a task each supports, in this process",
    )
    parser.add_argument("--continuous", type=positive, metavar="N",
                        help="time a sweep over step counts × 2 η on N of the bundled images (1-4) three ways: "
                             "continuous batching, packed per step count, sequential")  # fmt: skip
    parser.add_argument(
        "--chain-steps",
        type=positive,
        nargs="+",
        default=[50, 100, 250, 500, 1000],
        help="--continuous: the sweep's sampler.steps values",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="--continuous: divide the step counts by this")
    parser.add_argument(
        "--denoiser",
        choices=["random_adm", "natural32"],
        default="random_adm",
        help="--continuous: random_adm (--arch ffhq or imagenet) or the bundled natural32 prior",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one JSON config, print the result
    return parser


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop with one line (exit 2) on arguments that cannot run, before any timing."""
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU here (use --device cpu)")
    if args.size % 32:
        parser.error(f"--size {args.size}: the UNet halves the image 5 times, so the size must be a multiple of 32")
    if args.arch == "tiny" and args.tutorial_batch and not (args.sweep or args.samplers or args.continuous):
        parser.error("--arch tiny has no tutorial counterpart: give --tutorial-batch no value")
    if args.arch == "tiny" and (args.sweep or (args.continuous and args.denoiser == "random_adm")):
        parser.error(
            "--sweep and --continuous run denoiser=random_adm: --arch ffhq or imagenet (or --denoiser natural32)"
        )
    if args.continuous and args.continuous > 4:
        parser.error(f"--continuous {args.continuous}: the bundled images are 4")
    if args.scale <= 0:
        parser.error(f"--scale {args.scale}: a positive factor")
    if sum(map(bool, (args.sweep, args.samplers, args.continuous))) > 1:
        parser.error("--sweep, --samplers and --continuous are separate cases: give one")


def main() -> None:
    parser = arguments()
    args = parser.parse_args()
    check(parser, args)
    torch.set_num_threads(args.threads)  # the cases run here use it; the device's name says it
    name = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    if args.continuous:
        print(continuous_bench(args, name))
        return
    args.precision = args.precision or ["fp32", "bf16"]
    if args.sweep:
        print(sweep_bench(args))
        return
    if args.samplers:
        samplers_main(args, name)
        return
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    results, failed = [], 0
    for cfg in configurations(args):
        proc = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True, text=True, cwd=ROOT
        )
        if proc.returncode != 0:
            print(f"failed: {cfg}\n{proc.stderr[-3000:]}", file=sys.stderr)
            failed += 1
            continue
        results.append(r := json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{r['loop']:8s} batch {r['batch']:2d} {r['precision']} compile={r['compile']}: "
              f"{r['s_per_step']:.4f} s/step, peak {r['peak_mb']:.0f} MB", file=sys.stderr, flush=True)  # fmt: skip
        if args.out:  # as each finishes, so a run cut short keeps what it measured
            with args.out.open("a") as f:
                f.write(json.dumps({**r, "device_name": name}) + "\n")
    if results:
        print(table(results, name))
    if failed:
        sys.exit(f"error: {failed} configuration(s) failed (their errors are above)")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line for line in f if line.startswith("model name")).split(":", 1)[1]
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{model.strip()} ({torch.get_num_threads()} threads)"


if __name__ == "__main__":
    main()
