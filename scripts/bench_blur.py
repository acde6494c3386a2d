"""Time the blur's two convolution paths (direct grouped conv2d, FFT), forward plus backward as DPS runs them.

    python scripts/bench_blur.py [--size 256] [--batch 1 4] [--kernels 7 15 31 61] [--device cpu]

Prints the best-of-10 milliseconds per path and kernel size; `FFT_FROM` in dps_exp/physics/blur.py is the rule
`method=auto` follows, chosen from this table.
"""

from __future__ import annotations

import argparse
import time

import torch

from dps_exp.physics import GaussianBlur


def time_ms(fn, device: torch.device, repeats: int = 10) -> float:
    fn()  # warm-up: plans, allocations
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tic)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--kernels", type=int, nargs="+", default=[7, 15, 31, 61])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    # best of 10, not the median: on a shared machine the least disturbed run is the one to compare
    print(f"# {name}, {args.size}x{args.size}, forward + backward, best of 10, ms")
    print("batch kernel   direct      fft   direct/fft")
    for B in args.batch:
        x = torch.rand(B, 3, args.size, args.size, device=device, requires_grad=True)
        gens = [torch.Generator().manual_seed(b) for b in range(B)]
        for k in args.kernels:
            ms = {}
            for method in ("direct", "fft"):
                p = GaussianBlur(kernel_size=k, method=method).draw(x.shape, gens, device)
                ms[method] = time_ms(lambda p=p, x=x: p.A(x).square().sum().backward(), device)
            print(f"{B:5d} {k:6d} {ms['direct']:8.2f} {ms['fft']:8.2f} {ms['direct'] / ms['fft']:10.1f}")


if __name__ == "__main__":
    main()
