"""Denoising: the identity operator, for pure denoising and for sanity checks of a prior and a sampler."""

from __future__ import annotations

import torch
from torch import Tensor

from dps_exp.physics.base import LinearPhysics
from dps_exp.physics.noise import Noise
from dps_exp.physics.svd import Diagonal


class Denoising(LinearPhysics):
    """y = x + n: A = A_T = A⁺ = I (U = V = I, s = 1), for pure denoising and sanity checks."""

    exact_pinv = True

    def __init__(self, noise: Noise | None = None):
        super().__init__(noise or Noise())

    def A(self, x: Tensor) -> Tensor:
        return x

    def A_T(self, y: Tensor) -> Tensor:
        return y

    def init(self, y: Tensor) -> Tensor:
        return y

    def svd(self) -> Diagonal:
        return Diagonal(torch.ones(1, 1, 1, 1, dtype=torch.float64))
