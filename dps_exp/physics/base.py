"""What every forward model provides: y = noise(A(x)) on [-1, 1] images, one operator per sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Self

import torch
from torch import Tensor

from dps_exp.physics.noise import Noise
from dps_exp.physics.svd import SingularSystem


class Physics:
    """A batch of forward models. Parameters are numbers or (B,) tensors (one value per sample).

    Random parts (masks, kernels) are drawn by `draw` from per-sample CPU generators, so the operator a
    sample gets does not depend on the device or on the rest of its batch.

    Args:
        noise: the measurement noise: a `physics/noise` option's node (`gaussian` unless the option says otherwise)
    """

    def __init__(self, noise: Noise):
        self.noise = noise

    def draw(self, shape: Sequence[int], gens: Sequence[torch.Generator], device: torch.device) -> Self:
        """Draw the random parts for images of `shape` (B, C, H, W); returns self. Default: none."""
        return self

    def A(self, x: Tensor) -> Tensor:
        """The noiseless forward model, differentiable in x (B, C, H, W) ∈ [-1, 1]."""
        raise NotImplementedError

    def measure(self, x: Tensor, gens: Sequence[torch.Generator]) -> Tensor:
        """y = noise(A(x)), the noise of sample b drawn from gens[b]."""
        return self.noise.sample(self.A(x), gens)

    def state(self) -> dict[str, Tensor]:
        """The tensors that pin down the drawn operators (masks, kernels), batch-first, saved with results."""
        return {}

    def to_image(self, y: Tensor) -> Tensor:
        """A measurement shown as a [-1, 1] image batch (for pictures only)."""
        return y


class LinearPhysics(Physics):
    """A linear forward model: A has an adjoint A_T with ⟨A x, y⟩ = ⟨x, A_T y⟩."""

    exact_pinv: ClassVar[bool] = False
    """Whether `init` is exactly the Moore–Penrose pseudo-inverse A⁺ (so that x + A⁺(y − A x) replaces the
    measured part of x by y: what the projection samplers, score_sde and mcg, need)."""

    def A_T(self, y: Tensor) -> Tensor:
        """The adjoint, from measurements back to images (B, C, H, W)."""
        raise NotImplementedError

    def init(self, y: Tensor) -> Tensor:
        """A cheap image-shaped estimate of x from y: the pseudo-inverse A⁺ y where it is exact and cheap,
        otherwise a stated substitute (each operator says which). For starting points and pictures."""
        raise NotImplementedError

    def svd(self) -> SingularSystem | None:
        """A = U diag(s) Vᵀ of the drawn operators (dps_exp/physics/svd.py), float64, where the structure gives
        it exactly (computed once per draw); None where it does not (the default)."""
        return None
