"""Motion-blur kernels against the law of the `motionblur` package the DPS paper used (L. Borodenko's
`Kernel(size, intensity)`, https://github.com/LeviBorodenko/motionblur, motionblur.py), rewritten here from its
published algorithm with numpy's RNG and PIL, as the package draws and renders, to compare laws and renderings.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter
from scipy.stats import ks_2samp

from dps_exp.physics.motion import motion_kernel, path

EPS = 0.1


def reference_path(size: int, intensity: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """The package's `Kernel._createPath`: points of the trajectory in canvas pixels (x, y), canvas 2·size."""
    side = 2 * size
    diagonal = math.hypot(side, side)
    max_len = 0.75 * diagonal * (rng.uniform() + rng.uniform(0, intensity**2))
    steps: list[float] = []
    while sum(steps) < max_len:
        step = rng.beta(1, 30) * (1 - intensity + EPS) * diagonal
        if step < max_len:
            steps.append(step)
    max_angle = rng.uniform(0, intensity * math.pi)
    jitter = rng.beta(2, 20)
    angles = [rng.uniform(-max_angle, max_angle)]
    while len(angles) < len(steps):
        angle = rng.triangular(0, intensity * max_angle, max_angle + EPS)
        angles.append(angle * (-1 if rng.uniform() < jitter else 1) * np.sign(angles[-1]))
    z = np.cumsum(np.asarray(steps) * np.exp(1j * np.asarray(angles)))
    z = (z - z.sum() / len(steps)) * np.exp(1j * rng.uniform(0, math.pi)) + (side + 1j * side) / 2
    return [(p.real, p.imag) for p in z]


def reference_render(points: list[tuple[float, float]], size: int) -> np.ndarray:
    """The package's `Kernel._createKernel` and `kernelMatrix`: an RGB canvas, a drawn line, PIL's Gaussian blur,
    a Lanczos shrink, grey, normalised (float32 there; float64 here, to compare)."""
    side = 2 * size
    diagonal = math.hypot(side, side)
    img = Image.new("RGB", (side, side))
    ImageDraw.Draw(img).line(xy=points, width=int(diagonal / 150))
    img = img.filter(ImageFilter.GaussianBlur(radius=int(diagonal * 0.01)))
    img = img.resize((size, size), resample=Image.Resampling.LANCZOS).convert("L")
    k = np.asarray(img, dtype=np.float64)
    return k / k.sum()


def statistics(k: np.ndarray) -> tuple[float, float, float, float]:
    """Peak, pixels above 5% of the peak, radius of gyration (px) and elongation (the second-moment matrix's
    larger over smaller eigenvalue) of a normalised kernel."""
    peak = float(k.max())
    rows, cols = np.indices(k.shape)
    d = np.stack([rows - (k * rows).sum(), cols - (k * cols).sum()]).reshape(2, -1)
    cov = (d * k.reshape(-1)) @ d.T
    small, large = np.linalg.eigvalsh(cov)
    return peak, float((k > 0.05 * peak).sum()), math.sqrt(small + large), float(large / small)


NAMES = ("peak", "area", "gyration", "elongation")
N = 500


def test_kernels_follow_the_package_law():
    """N kernels of ours and N of the package's law (its own RNG): each statistic's two-sample KS test passes.
    (The bilinear-splat, bicubic, unrounded rendering this replaced fails it: peak p = 2e-4, area p = 3e-5.)"""
    ours = np.array([statistics(motion_kernel(61, 0.5, torch.Generator().manual_seed(s)).numpy()) for s in range(N)])
    rng = np.random.default_rng(2023)
    theirs = np.array([statistics(reference_render(reference_path(61, 0.5, rng), 61)) for _ in range(N)])
    p = {name: ks_2samp(ours[:, i], theirs[:, i]).pvalue for i, name in enumerate(NAMES)}
    assert min(p.values()) > 0.01, p


@pytest.mark.parametrize("intensity", [0.0, 0.5, 1.0])
def test_a_path_is_rendered_as_the_package_renders_it(intensity):
    """Our kernel is the package's rendering of our own trajectory, pixel for pixel."""
    for seed in range(5):
        k = motion_kernel(61, intensity, torch.Generator().manual_seed(seed))
        z = path(intensity, math.hypot(122, 122), torch.Generator().manual_seed(seed)) + complex(61, 61)
        ref = reference_render([(p.real, p.imag) for p in z.tolist()], 61)
        assert k.dtype == torch.float64 and k.sum().item() == pytest.approx(1, abs=1e-12)
        assert np.allclose(k.numpy(), ref, rtol=0, atol=1e-15)


def test_a_kernel_too_small_for_the_packages_law_is_refused_in_one_line():
    """Below 55 px the package's line is 0 px wide: no kernel could be drawn, so the value is refused up front."""
    from dps_exp.config import check_node
    from dps_exp.errors import ConfigError

    node = {"_target_": "dps_exp.physics.blur.MotionBlur", "kernel_size": 53}
    with pytest.raises(ConfigError, match=r"physics.kernel_size=53 is not allowed: it must satisfy 55 ≤ kernel_size"):
        check_node(node, "physics")
    check_node(node | {"kernel_size": 55}, "physics")
    for seed in range(5):  # and the smallest allowed one draws, every time
        k = motion_kernel(55, 0.5, torch.Generator().manual_seed(seed))
        assert k.sum().item() == pytest.approx(1.0)
