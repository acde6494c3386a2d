"""Measurement noise models and the DPS distance each one implies."""

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
        self._weights: tuple | None = None

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

    def distance(self, y: Tensor, Ax: Tensor) -> Tensor:
        """The DPS data-consistency distance per sample, shape (B,).

        gaussian, none: ‖y − A x‖₂, the plain (not squared) norm of the DPS paper and code.
        poisson: the paper's weighted norm ‖y − A x‖_Λ = √(Σ_j (y_j − [A x]_j)² / (2 y_j)) (§3.2: the Gaussian
        approximation of the Poisson likelihood, Λ_jj = 1 / (2 y_j)), in photon counts, where y_j is a Poisson
        count: y_j ↦ (y_j + 1) 255 λ / 2. A pixel that counted no photon is weighted as one that counted one
        (its Poisson variance estimate cannot be 0). This is √(½ Σ r_j² / Var y_j), the Gaussian approximation's
        negative log-likelihood, whatever scale y is written on. (The official code instead steps along
        ∇ ‖y − A x‖ · mean_j 1/|y_j| with y on [-1, 1]: a plain norm with a per-image factor; not used here.)
        """
        if self.kind != "poisson":
            return torch.linalg.vector_norm((y - Ax).flatten(1), dim=1)
        half_scale, root = self.poisson_weights(y)
        whitened = (y - Ax) * half_scale / root
        return torch.linalg.vector_norm(whitened.flatten(1), dim=1)

    def poisson_weights(self, y: Tensor) -> tuple[float | Tensor, Tensor]:
        """255 λ / 2 and √(2 · counts) of a measurement y: they depend on y alone, so they are computed once per
        y, not at every DPS step (and a per-sample λ is copied to the device once)."""
        if self._weights is None or self._weights[0] is not y:
            half_scale = LEVELS * batch.per_sample(self.rate, y) / 2
            self._weights = (y, half_scale, (2 * ((y + 1) * half_scale).clamp_min(1.0)).sqrt())
        return self._weights[1:]
