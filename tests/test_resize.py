"""Super-resolution's downsampling against MATLAB's imresize, written here independently as loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dps_exp.physics import SuperResolution
from dps_exp.physics.resize import imresize, resize_matrix


def keys_cubic(t: float) -> float:
    a = abs(t)
    if a <= 1:
        return 1.5 * a**3 - 2.5 * a**2 + 1
    if a <= 2:
        return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
    return 0.0


def matlab_resize_rows(img: np.ndarray, scale: float) -> np.ndarray:
    """imresize along axis 0, as MATLAB's contributions(): 1-based pixels, kernel stretched by 1/scale when
    shrinking, weights normalised per output pixel, indices mirrored symmetrically at the borders."""
    n = img.shape[0]
    out_len = math.ceil(n * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    out = np.zeros((out_len, *img.shape[1:]))
    for i in range(1, out_len + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = []
        for j in range(left, left + math.ceil(width) + 2):
            w = scale * keys_cubic(scale * (u - j)) if scale < 1 else keys_cubic(u - j)
            while j < 1 or j > n:
                j = 1 - j if j < 1 else 2 * n + 1 - j
            taps.append((w, j - 1))
        total = sum(w for w, _ in taps)
        for w, j in taps:
            out[i - 1] += w / total * img[j]
    return out


def matlab_imresize(img: np.ndarray, scale: float) -> np.ndarray:
    return matlab_resize_rows(matlab_resize_rows(img, scale).T, scale).T


@pytest.mark.parametrize("size, factor", [(256, 4), (37, 4), (30, 3), (16, 2)])
def test_downsampling_matches_the_matlab_reference_on_random_images(size, factor):
    img = np.random.default_rng(size).uniform(-1, 1, (size, size + 3))
    ours = imresize(torch.from_numpy(img), 1 / factor).numpy()
    ref = matlab_imresize(img, 1 / factor)
    assert ours.shape == ref.shape == (math.ceil(size / factor), math.ceil((size + 3) / factor))
    assert np.abs(ours - ref).max() < 1e-12


def test_known_values_and_the_interior_of_torchs_antialiased_bicubic():
    """Octave's imresize(reshape(0:15, 4, 4)', 0.5, 'bicubic', 'AntiAliasing', false) = [2.1875 4.3125;
    10.6875 12.8125]. Away from the borders, torch's antialiased bicubic (PIL's algorithm, a = −0.5) is the same
    map; it only treats the borders differently (truncated kernel instead of mirrored pixels)."""
    img = torch.arange(16, dtype=torch.float64).reshape(4, 4)
    R = resize_matrix(4, 0.5, antialias=False)
    assert torch.allclose(R @ img @ R.T, torch.tensor([[2.1875, 4.3125], [10.6875, 12.8125]], dtype=torch.float64))
    x = torch.rand(1, 3, 256, 256, dtype=torch.float64)
    theirs = F.interpolate(x, size=(64, 64), mode="bicubic", antialias=True, align_corners=False)
    assert (imresize(x, 0.25) - theirs)[..., 2:-2, 2:-2].abs().max() < 1e-12


def test_super_resolution_is_the_paper_shape_and_keeps_constants():
    p = SuperResolution(factor=4).draw((2, 3, 256, 256), [torch.Generator()] * 2, "cpu")
    assert p.A(torch.zeros(2, 3, 256, 256)).shape == (2, 3, 64, 64)
    assert torch.allclose(p.A(torch.full((1, 3, 256, 256), 0.3)), torch.tensor(0.3))
