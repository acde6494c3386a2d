"""Measurement noise models: how y departs from A x. (How a sampler weighs that departure is its own:
dps_exp/samplers/consistency.py.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch
from torch import Tensor

from dps_exp import batch
from dps_exp.config import PER_SAMPLE, Range

LEVELS = 255.0
"""Grey levels of an 8-bit image: the official code's Poisson photon count of a white pixel at rate 1."""


class Noise:
    """Noise added to A(x), which lives on the [-1, 1] image scale.

    kind:
      `gaussian`  y = A x + σ ε, σ on the [-1, 1] scale (the DPS code's convention: σ = 0.05 there is 0.025
                  on a [0, 1] scale).
      `poisson`   shot noise as the official code (guided_diffusion/measurements.py, `PoissonNoise`) draws it:
                  v = clip((A x + 1)/2, 0, 1) is the [0, 1] intensity, the photon count is
                  c ~ Poisson(255 λ v), and y = clip(2 c / (255 λ) − 1, −1, 1). The rate λ = 1 (the paper's
                  setting) gives a white pixel 255 expected photons; larger λ is less noise. Operators whose
                  output is not an image on [-1, 1] (phase retrieval) are clipped to it, as in that code.
      `none`      y = A x.

    σ and λ may differ per sample ((B,) tensors).

    Args:
        kind: `gaussian` (y = A x + σ ε), `poisson` (photon counts, see Conventions) or `none`; each kind reads its own
            keys
        sigma: Gaussian std on the [-1, 1] scale (`kind=gaussian`). Paper: 0.05 (0.025 on [0, 1])
        rate: Poisson rate λ: a white pixel counts 255·λ photons on average (`kind=poisson`). Paper: 1.0
    """

    def __init__(
        self,
        kind: Literal["gaussian", "poisson", "none"] = "gaussian",
        sigma: Annotated[float, Range(0, None), PER_SAMPLE] = 0.05,
        rate: Annotated[float, Range(0, None, lo_open=True), PER_SAMPLE] = 1.0,
    ):
        self.kind = kind
        self.sigma = sigma
        self.rate = rate

    def sample(self, Ax: Tensor, gens: Sequence[torch.Generator]) -> Tensor:
        """y = noise(A x); sample b's noise drawn from gens[b] on the CPU, so it is the same on every device."""
        if self.kind == "none":
            return Ax
        if self.kind == "gaussian":
            eps = batch.randn(Ax.shape, gens, device="cpu", dtype=Ax.dtype).to(Ax.device)
            return Ax + batch.per_sample(self.sigma, Ax) * eps
        Ax_host = Ax.detach().cpu().double()
        scale = LEVELS * batch.per_sample(self.rate, Ax_host)
        lam = ((Ax_host + 1) / 2).clamp(0, 1) * scale
        counts = torch.stack([torch.poisson(lam[b], generator=g) for b, g in enumerate(gens)])
        return (2 * counts / scale - 1).clamp(-1, 1).to(device=Ax.device, dtype=Ax.dtype)
