"""Measurement noise models and the DPS distance each one implies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch
from torch import Tensor

from dps_exp import batch
from dps_exp.config import PER_SAMPLE, Range


class Noise:
    """Noise added to A(x), on the [-1, 1] image scale (the DPS code's convention: σ = 0.05 there is 0.025
    on a [0, 1] scale).

    kind: `gaussian` adds σ·ε; `none` adds nothing (the distance is then the plain residual norm too).
    """

    def __init__(
        self,
        kind: Literal["gaussian", "none"] = "gaussian",
        sigma: Annotated[float, Range(0, None), PER_SAMPLE] = 0.05,
    ):
        self.kind = kind
        self.sigma = sigma

    def sample(self, Ax: Tensor, gens: Sequence[torch.Generator]) -> Tensor:
        if self.kind == "none":
            return Ax
        eps = batch.randn(Ax.shape, gens, device="cpu", dtype=Ax.dtype).to(Ax.device)
        return Ax + batch.per_sample(self.sigma, Ax) * eps

    def distance(self, y: Tensor, Ax: Tensor) -> Tensor:
        """‖y − A x‖₂ per sample (the plain, not squared, norm of the DPS paper)."""
        return torch.linalg.vector_norm((y - Ax).flatten(1), dim=1)
