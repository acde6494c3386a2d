"""Inpainting: a per-sample binary mask shared by the colour channels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Self

import torch
from torch import Tensor

from dps_exp import batch
from dps_exp.config import PER_SAMPLE, Range
from dps_exp.physics.base import LinearPhysics
from dps_exp.physics.noise import Noise


class RandomInpainting(LinearPhysics):
    """y = m ⊙ x + n, each pixel kept independently with probability `mask`.

    `mask` is the fraction of pixels KEPT (the tutorial's and deepinv's convention: mask=0.1 hides 90%;
    the paper's random inpainting hides 92%, mask=0.08).
    """

    def __init__(
        self,
        mask: Annotated[float, Range(0, 1, lo_open=True), PER_SAMPLE] = 0.1,
        noise: Noise | None = None,
    ):
        super().__init__(noise or Noise())
        self.mask = mask
        self.m: Tensor | None = None

    def draw(self, shape: Sequence[int], gens: Sequence[torch.Generator], device: torch.device) -> Self:
        B, _, H, W = shape
        u = batch.rand((B, 1, H, W), gens, device="cpu", dtype=torch.float64)
        self.m = (u < batch.per_sample(self.mask, u)).to(device=device, dtype=torch.float32)
        return self

    def A(self, x: Tensor) -> Tensor:
        return self.m * x

    def A_T(self, y: Tensor) -> Tensor:
        return self.m * y

    def state(self) -> dict[str, Tensor]:
        return {"mask": self.m}
