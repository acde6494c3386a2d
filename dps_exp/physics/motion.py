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
5. Rasterised as a 1-pixel line (the package's width ⌊D/150⌋ = 1 at n = 61), Gaussian-blurred with
   σ = ⌊D/100⌋ px (PIL's GaussianBlur radius is a standard deviation), shrunk 2× with antialiasing, made
   non-negative and normalised to sum 1.

Differences from the package, none of which change the law of the trajectory: the line is drawn by splatting
points every ¼ px bilinearly (saturating at 1, as a drawn line does) instead of PIL's aliased line, and the 2×
shrink is MATLAB's antialiased bicubic (physics/resize.py) instead of PIL's Lanczos; no 8-bit rounding.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dps_exp.physics.resize import imresize

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


def rasterise(z: Tensor, side: int) -> Tensor:
    """A polyline through the points z (x = real, y = imaginary, in pixels from the canvas corner) as a
    (side, side) image of line coverage in [0, 1], sampled every ¼ pixel and splatted bilinearly."""
    if len(z) > 1:
        seg = z[1:] - z[:-1]
        n = (seg.abs() * 4).ceil().clamp_min(1).long()
        t = torch.cat([torch.arange(k, dtype=torch.float64) / k for k in n.tolist()])
        points = z[:-1].repeat_interleave(n) + t * seg.repeat_interleave(n)
        weight = (seg.abs() / n).repeat_interleave(n)  # each sample stands for its stretch of line
    else:  # a one-step walk: a dot
        points, weight = z, torch.ones(1, dtype=torch.float64)
    canvas = torch.zeros(side, side, dtype=torch.float64)
    x, y = points.real - 0.5, points.imag - 0.5  # pixel j covers [j, j + 1): its centre is at j + ½
    x0, y0 = x.floor(), y.floor()
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        w = weight * (1 - (x - x0 - dx).abs()) * (1 - (y - y0 - dy).abs())
        col, row = (x0 + dx).long(), (y0 + dy).long()
        inside = (col >= 0) & (col < side) & (row >= 0) & (row < side)  # PIL clips the line at the canvas too
        canvas.index_put_((row[inside], col[inside]), w[inside], accumulate=True)
    return canvas.clamp(max=1.0)


def gaussian_blur(img: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (radius 3σ, zero outside the canvas) of a 2-D image."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = (g / g.sum())[None, None, :]
    conv = torch.nn.functional.conv1d
    rows = conv(img[:, None, :], g, padding=r)[:, 0, :]  # along x
    return conv(rows.T[:, None, :], g, padding=r)[:, 0, :].T  # along y


def motion_kernel(size: int, intensity: float, gen: torch.Generator) -> Tensor:
    """A (size, size) float64 motion-blur kernel, non-negative, summing to 1, drawn from `gen` alone."""
    side = 2 * size
    diagonal = math.sqrt(2) * side
    z = path(intensity, diagonal, gen) + complex(side / 2, side / 2)
    line = rasterise(z, side)
    sigma = int(diagonal * 0.01)  # the package's blur radius, 1 px at size 61
    k = imresize(gaussian_blur(line, sigma) if sigma > 0 else line, 0.5).clamp_min(0)
    total = k.sum()
    if not total > 0:  # the trajectory left the canvas altogether; the package divides by zero here
        raise RuntimeError(f"motion kernel of intensity {intensity} fell outside its {size}-px canvas")
    return k / total
