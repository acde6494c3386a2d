"""Random-trajectory motion-blur kernels, after the generator the DPS paper used (the `motionblur` package of
L. Borodenko, `Kernel(size, intensity)`), written anew with torch and a caller's generator.

A kernel of side n is drawn on a 2n × 2n canvas of diagonal D = 2√2 n and then shrunk, as the package does:

1. Path length  L = 0.75 D (U(0, 1) + U(0, I²)), I the intensity in [0, 1].
2. Step lengths s_k ~ Beta(1, 30) (1 − I + 0.1) D, each below L, taken until Σ s_k ≥ L (the package rejects
   a step ≥ L and draws again; here it is drawn from Beta(1, 30) truncated below L/((1 − I + 0.1) D), the same
   law, without a loop that could run for long).
3. Step directions: θ_max ~ U(0, I π), a sign-flip probability j ~ Beta(2, 20), θ_0 ~ U(−θ_max, θ_max), and
   |θ_k| ~ Triangular(0, I θ_max, θ_max + 0.1) whose sign flips from the previous one's with probability j.
   (Directions, not turns: the walk is bounded in a cone, and I = 0 is a straight line.)
4. The path z_k = Σ_{i≤k} s_i e^{iθ_i}, centred on its mean, rotated by U(0, π), put in the canvas middle.
5. Rendered with PIL as the package renders it: drawn as a line of width ⌊D/150⌋ px (1 at n = 61, PIL's aliased
   line) in white on a black 8-bit canvas, Gaussian-blurred by PIL's GaussianBlur of radius ⌊D/100⌋ (1 at
   n = 61; PIL's radius is a standard deviation), shrunk 2× by PIL's Lanczos resize; 8-bit after each step, as
   there. The result, as float64, is normalised to sum 1.

Differences from the package: its random draws come from numpy's global generator, ours from the caller's torch
generator (the same laws, not the same draws for a seed); step 2's truncated Beta replaces its rejection loop
(the same law); it draws on an RGB canvas and takes its grey at the end, we draw on a grey ('L') canvas (its
three channels are equal, so the pixels are the same); its kernel is float32, ours float64; and where the path
leaves the canvas altogether it divides by zero, we raise. The pixels follow the installed Pillow's line, blur
and Lanczos, as the package's do (tests/test_motion.py renders our paths the package's way and compares pixels,
and compares the law of our kernels with the package's).
"""

from __future__ import annotations

import math

import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import Tensor

EPS = 0.1
"""The package's constant added to the step scale and the largest angle."""


def uniform(gen: torch.Generator, n: int = 1, low: float = 0.0, high: float = 1.0) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)


def path(intensity: float, diagonal: float, gen: torch.Generator) -> Tensor:
    """The trajectory's points z_k (complex128), centred on their mean, randomly rotated (steps 1–4)."""
    I = intensity
    length = 0.75 * diagonal * (uniform(gen) + uniform(gen, high=I**2)).item()
    scale = (1 - I + EPS) * diagonal
    cdf_cap = 1 - (1 - min(length / scale, 1.0)) ** 30  # Beta(1, 30) CDF at the cap
    steps = torch.empty(0, dtype=torch.float64)
    while len(steps) == 0 or steps.sum() < length:  # 64 at a time; about 25 are needed at n = 61, I = 0.5
        u = uniform(gen, 64) * cdf_cap
        steps = torch.cat([steps, scale * (1 - (1 - u) ** (1 / 30))])
    steps = steps[: int((steps.cumsum(0) < length).sum()) + 1]

    theta_max = uniform(gen, high=I * math.pi).item()
    jitter = uniform(gen, 21).sort().values[1].item()  # Beta(2, 20): the 2nd smallest of 21 uniforms
    first = uniform(gen, low=-theta_max, high=theta_max)
    magnitude = triangular(uniform(gen, len(steps) - 1), mode=I * theta_max, high=theta_max + EPS)
    flips = torch.where(uniform(gen, len(steps) - 1) < jitter, -1.0, 1.0)
    signs = torch.sign(first) * torch.cat([torch.ones(1, dtype=torch.float64), flips.cumprod(0)])
    theta = signs * torch.cat([first.abs(), magnitude])

    z = torch.polar(steps, theta).cumsum(0)
    return (z - z.mean()) * torch.polar(torch.ones((), dtype=torch.float64), uniform(gen, high=math.pi)[0])


def triangular(u: Tensor, mode: float, high: float) -> Tensor:
    """Triangular(0, mode, high) by inverting its CDF at uniforms u."""
    split = mode / high
    return torch.where(u < split, (u * high * mode).sqrt(), high - ((1 - u) * high * (high - mode)).sqrt())


MIN_KERNEL = 55
"""The smallest kernel the package's law can render: its line is int(diagonal / 150) px wide on the 2·size canvas,
0 px (nothing drawn) below 55."""


def render(z: Tensor, size: int) -> Tensor:
    """The polyline through z (x = real, y = imaginary, in pixels of the 2·size canvas) rendered as the package
    renders it (step 5), as a (size, size) uint8 image."""
    side = 2 * size
    diagonal = math.hypot(side, side)
    img = Image.new("L", (side, side))  # the package's RGB canvas holds three equal channels: its grey is this
    ImageDraw.Draw(img).line(
        list(zip(z.real.tolist(), z.imag.tolist(), strict=True)), fill=255, width=int(diagonal / 150)
    )
    img = img.filter(ImageFilter.GaussianBlur(radius=int(diagonal * 0.01)))
    img = img.resize((size, size), resample=Image.Resampling.LANCZOS)
    return torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size)


def motion_kernel(size: int, intensity: float, gen: torch.Generator) -> Tensor:
    """A (size, size) float64 motion-blur kernel, non-negative, summing to 1, drawn from `gen` alone."""
    side = 2 * size
    z = path(intensity, math.hypot(side, side), gen) + complex(side / 2, side / 2)
    k = render(z, size).double()
    total = k.sum()
    if not total > 0:  # the trajectory left the canvas altogether; the package divides by zero here
        raise RuntimeError(f"motion kernel of intensity {intensity} fell outside its {size}-px canvas")
    return k / total
