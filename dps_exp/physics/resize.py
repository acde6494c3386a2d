"""MATLAB `imresize` (bicubic, antialiased) as a separable linear map: one matrix per image side.

The paper's resizer (util/resizer.py of the official code, after Shocher's `resizer`) reproduces MATLAB's
`imresize`; this module writes the same arithmetic as matrices, so that the resize of an image X (H, W) is
R_H X R_Wᵀ and its adjoint is R_Hᵀ Y R_W. For each output pixel i (1-based, as MATLAB):

    u_i    = i / s + (1 − 1/s) / 2                 its position on the input grid (pixel centres at 1, 2, …)
    w_ij   = h(u_i − j),  j = ⌊u_i − width/2⌋ … + ⌈width⌉ + 1
    h(t)   = s · cubic(s t), width = 4 / s         when shrinking (s < 1) with antialiasing; else cubic, width 4
    R[i, mirror(j)] += w_ij / Σ_j w_ij             indices past a border reflect symmetrically (edge repeated)

with MATLAB's cubic kernel (Keys, a = −0.5). The output has ⌈s · n⌉ pixels. Where the size is not a multiple
of the factor, Shocher's resizer also shifts u to keep the image centred; MATLAB (and this module) does not.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor


def cubic(t: Tensor) -> Tensor:
    """MATLAB's bicubic kernel (Keys' cubic convolution with a = −0.5), supported on |t| < 2."""
    a = t.abs()
    near = (1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1)
    far = (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((a > 1) & (a <= 2))
    return near + far


def mirror(j: Tensor, n: int) -> Tensor:
    """0-based indices reflected into [0, n) with the edge pixel repeated (MATLAB's `symmetric`)."""
    j = j % (2 * n)
    return torch.where(j < n, j, 2 * n - 1 - j)


@lru_cache(maxsize=32)
def resize_matrix(n: int, scale: float, antialias: bool = True) -> Tensor:
    """The (⌈scale · n⌉, n) float64 matrix resizing one image side of n pixels by `scale`, as MATLAB does."""
    out = math.ceil(scale * n - 1e-9)
    shrink = antialias and scale < 1
    width = 4.0 / scale if shrink else 4.0
    u = torch.arange(1, out + 1, dtype=torch.float64) / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    j = left[:, None] + torch.arange(math.ceil(width) + 2, dtype=torch.float64)  # 1-based input pixels
    d = u[:, None] - j
    w = scale * cubic(scale * d) if shrink else cubic(d)
    w = w / w.sum(dim=1, keepdim=True)
    R = torch.zeros(out, n, dtype=torch.float64)
    rows = torch.arange(out)[:, None].expand_as(j)
    R.index_put_((rows, mirror(j.long() - 1, n)), w, accumulate=True)
    return R


def imresize(x: Tensor, scale: float) -> Tensor:
    """MATLAB `imresize(x, scale)` (bicubic, antialiased) of images (..., H, W), differentiable in x."""
    R_h = resize_matrix(x.shape[-2], scale).to(x)
    R_w = resize_matrix(x.shape[-1], scale).to(x)
    return R_h @ x @ R_w.T
