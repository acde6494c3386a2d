"""The interpolation baseline reproduces what it should: planes exactly, kept pixels as measured."""

from __future__ import annotations

import torch

from dps_exp.analysis.baselines import linear_inpaint


def test_linear_inpainting_reproduces_a_plane_and_keeps_the_kept_pixels():
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(10.0), indexing="ij")
    plane = (0.1 * ys - 0.05 * xs + 0.3).expand(2, 3, 12, 10)
    mask = (torch.rand(2, 1, 12, 10, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    mask[:, :, [0, 0, -1, -1], [0, -1, 0, -1]] = 1  # the corners: the hull is the whole image
    out = linear_inpaint(plane, mask)
    assert torch.allclose(out, plane, atol=1e-5)
    noisy = plane + torch.randn(plane.shape, generator=torch.Generator().manual_seed(1))
    kept = mask.expand_as(plane).bool()
    assert torch.allclose(linear_inpaint(noisy, mask)[kept], noisy[kept], atol=1e-5)
