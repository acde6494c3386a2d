"""Plain reconstructions that use no prior, for comparison with DPS."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def linear_inpaint(y: Tensor, mask: Tensor) -> Tensor:
    """Linear interpolation of the kept pixels, per channel (scipy griddata over their Delaunay
    triangulation), and the nearest kept pixel outside their convex hull.

    y (B, C, H, W) and mask (B, 1, H, W) (1 = kept) on any scale; returns (B, C, H, W) float32 on y's scale.
    """
    from scipy.interpolate import griddata  # scipy comes with the dev/scripts dependencies only

    B, C, H, W = y.shape
    grid = np.stack(np.meshgrid(np.arange(H), np.arange(W), indexing="ij"), -1).reshape(-1, 2)
    values = y.detach().double().cpu().numpy().reshape(B, C, -1)
    out = np.empty((B, C, H * W))
    for b in range(B):
        keep = mask[b, 0].detach().cpu().numpy().reshape(-1) > 0
        for c in range(C):
            lin = griddata(grid[keep], values[b, c, keep], grid, method="linear")
            near = griddata(grid[keep], values[b, c, keep], grid, method="nearest")
            out[b, c] = np.where(np.isnan(lin), near, lin)
    return torch.from_numpy(out).float().view(B, C, H, W)
