"""Manifold-constrained gradients (Chung et al., NeurIPS 2022), the DPS paper's MCG baseline: DPS's step, then the
projection of score_sde (the official DPS code's `mcg` conditioning)."""

from __future__ import annotations

from typing import Annotated, Literal

from torch import Tensor

from dps_exp.config import PER_SAMPLE, Range
from dps_exp.denoisers.base import Denoiser, Prediction
from dps_exp.samplers.consistency import Distance, DistanceName
from dps_exp.samplers.dps import DPS, guidance
from dps_exp.samplers.score_sde import ScoreSDE


class MCG(ScoreSDE):
    """MCG as the official DPS code's `mcg` conditioning (`ManifoldConstraintGradient`), the DPS paper's baseline
    (1000 NFE): the DPS step, the same gradient and `scale`, then score_sde's projection onto the noised measurement.

    Each step, for the current timestep t and the next one t':

        x̂0   = clip(D(x_t, t), −1, 1)                 prior's estimate of the clean image
        g    = ∇_{x_t} ‖y − A x̂0‖                      likelihood gradient (per sample; `distance`)
        x_t' = update(x_t, x̂0, ε) − ζ g                DPS's step (`variance`)
        y_t  = √ᾱ_t y + √(1 − ᾱ_t) ε_y                 the measurement noised to t, as the official code
        x_t' ← x_t' + A⁺(y_t − A x_t')                  the measured part of x_t' replaced by y_t

    The projection overwrites the measured part of ζ g, so only its part in the null space of A acts: the MCG
    authors' own code masks the gradient to the hidden pixels, to the same effect. One forward and one
    input-gradient backward pass a step. η and ζ may be (B,) tensors: one value per sample.

    Args:
        step_size: ζ, the factor on ∇‖y − A x̂0‖: the official code's `scale`. Its default, 1.0, is that code's (it ships
            no MCG task config; the MCG authors' FFHQ inpainting code also steps by 1)
    """

    name = "mcg"
    divergence_hint = "a smaller sampler.step_size usually helps"

    def __init__(
        self,
        steps: Annotated[int, Range(1, 1000)] = 1000,
        eta: Annotated[float, Range(0, 1), PER_SAMPLE] = 1.0,
        step_size: Annotated[float, Range(0, None), PER_SAMPLE] = 1.0,
        variance: Literal["eta", "learned"] = "learned",
        distance: DistanceName = "auto",
    ):
        DPS.__init__(self, steps=steps, eta=eta, step_size=step_size, variance=variance, distance=distance)

    def predict(self, x: Tensor, t: Tensor, distance: Distance, prior: Denoiser) -> tuple[Prediction, Tensor | None]:
        """DPS's x̂0 (clipped) and g = ∇_{x_t} ‖y − A x̂0‖."""
        return guidance(x, t, distance, prior)
