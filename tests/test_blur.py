"""Blur kernels: size, normalisation, spread, seeds; the blur itself against torch's reflect-pad convolution."""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from dps_exp.errors import ConfigError
from dps_exp.physics import GaussianBlur, MotionBlur
from dps_exp.physics.motion import motion_kernel


def gens(n, offset=0):
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


def moments(k):
    """Centroid (row, column) offsets from the middle pixel and variances of a (n, n) kernel."""
    t = torch.arange(k.shape[-1], dtype=k.dtype) - k.shape[-1] // 2
    rows, cols = k.sum(1), k.sum(0)
    mean = ((rows * t).sum(), (cols * t).sum())
    var = ((rows * (t - mean[0]) ** 2).sum(), (cols * (t - mean[1]) ** 2).sum())
    return mean, var


def test_gaussian_kernel_is_scipys_gaussian_filter_of_a_delta():
    k = GaussianBlur(std=3.0).kernels(1, gens(1))[0]
    delta = torch.zeros(61, 61, dtype=torch.float64)
    delta[30, 30] = 1
    assert k.shape == (61, 61)
    assert torch.allclose(k, torch.from_numpy(ndimage.gaussian_filter(delta.numpy(), sigma=3.0)), atol=1e-15)
    assert k.sum().item() == pytest.approx(1, abs=1e-12)
    (mr, mc), (vr, vc) = moments(k)
    assert abs(mr) < 1e-12 and abs(mc) < 1e-12
    assert vr.item() == pytest.approx(9, abs=0.01) and vc.item() == pytest.approx(9, abs=0.01)  # σ = 3, cut at 4σ


def test_motion_kernels_sum_to_one_are_centred_spread_and_follow_their_seed():
    kernels = [motion_kernel(61, 0.5, g) for g in gens(20)]
    for k in kernels:
        assert k.shape == (61, 61) and (k >= 0).all() and k.sum().item() == pytest.approx(1, abs=1e-12)
    offsets = [float(torch.stack(moments(k)[0]).norm()) for k in kernels]
    spreads = [float(sum(moments(k)[1]).sqrt()) for k in kernels]
    assert statistics.median(offsets) < 2  # the trajectory is centred on its mean
    assert 3 < statistics.median(spreads) < 30  # a blur, not a delta, and inside its window
    assert len({k.sum(0).argmax().item() * 61 + k.sum(1).argmax().item() for k in kernels}) > 5
    assert torch.equal(motion_kernel(61, 0.5, gens(1, 7)[0]), kernels[7])


def minor_width(k):
    """The smallest eigenvalue of a kernel's 2×2 covariance (px²): the squared width across its path."""
    t = torch.arange(k.shape[-1], dtype=k.dtype) - k.shape[-1] // 2
    Y, X = torch.meshgrid(t, t, indexing="ij")
    d = torch.stack([Y - (k * Y).sum(), X - (k * X).sum()])
    cov = torch.einsum("ihw,jhw,hw->ij", d, d, k)
    return torch.linalg.eigvalsh(cov)[0].item()


def test_motion_intensity_bends_the_path():
    """Intensity 0 draws straight segments (no width beyond the line's); higher intensities bend them."""
    widths = {i: [minor_width(motion_kernel(61, i, g)) for g in gens(10)] for i in (0.0, 1.0)}
    assert max(widths[0.0]) < 0.5
    assert statistics.mean(widths[1.0]) > 4 * statistics.mean(widths[0.0])


def test_motion_kernel_per_image_or_per_run():
    per_image = MotionBlur(kernel_per="image").draw((3, 3, 32, 32), gens(3), "cpu").k
    assert not torch.equal(per_image[0], per_image[1])
    assert torch.equal(MotionBlur().draw((1, 3, 32, 32), gens(1, 2), "cpu").k[0], per_image[2])
    per_run = MotionBlur(kernel_per="run", kernel_seed=5).draw((3, 3, 32, 32), gens(3), "cpu").k
    assert torch.equal(per_run[0], per_run[1]) and torch.equal(per_run[1], per_run[2])
    other = MotionBlur(kernel_per="run", kernel_seed=6).draw((1, 3, 32, 32), gens(1), "cpu").k
    assert not torch.equal(other[0], per_run[0])


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_blur_is_reflect_padding_then_a_per_channel_convolution(method):
    """The official Blurkernel: nn.ReflectionPad2d(k // 2), then a grouped conv2d (cross-correlation)."""
    x = torch.rand(2, 3, 96, 96, dtype=torch.float64) * 2 - 1
    p = MotionBlur(method=method).draw(x.shape, gens(2), "cpu")
    padded = F.pad(x, (30, 30, 30, 30), mode="reflect")
    ref = torch.stack([F.conv2d(padded[b : b + 1], p.k[b : b + 1].expand(3, 1, 61, 61), groups=3)[0] for b in range(2)])
    assert torch.allclose(p.A(x), ref, atol=1e-12)
    xf = x.float().requires_grad_(True)
    (g,) = torch.autograd.grad(p.A(xf).square().sum(), xf)
    assert torch.isfinite(g).all() and p.A(xf).dtype == torch.float32


def test_even_kernel_sizes_are_refused():
    with pytest.raises(ConfigError, match="physics.kernel_size=60 is not allowed: it must be odd"):
        GaussianBlur(kernel_size=60)
