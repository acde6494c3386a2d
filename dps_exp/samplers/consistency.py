"""Data-consistency distances: how far a prediction's measurement A x̂0 is from y, per sample.

They belong to the sampler, not to the forward model: the forward model says how y arises (A and its noise);
a sampler chooses how to pull its iterate towards y. The choices (`sampler.distance`):

  plain     ‖y − A x̂0‖₂, the plain (not squared) norm of the DPS paper and code, under Gaussian noise.
  weighted  the paper's Poisson-weighted norm ‖y − A x̂0‖_Λ = √(Σ_j (y_j − [A x̂0]_j)² / (2 y_j)) (§3.2: the
            Gaussian approximation of the Poisson likelihood, Λ_jj = 1/(2 y_j)), in photon counts: y_j ↦
            (y_j + 1) 255 λ / 2. A pixel that counted no photon is weighted as one that counted one (its
            Poisson variance estimate cannot be 0). This is √(½ Σ r_j² / Var y_j) whatever scale y is written on.
  official  the official DPS code's Poisson term, ‖y − A x̂0‖₂ · mean_j 1/|y_j| with y on [-1, 1]
            (`condition_methods.py`, per sample here): a plain norm with a factor per image, so that the
            official code's Poisson step sizes carry over. A measurement value of exactly 0 makes the factor
            infinite, as there; the sample is then recorded as diverged.
  auto      the noise model's own: `weighted` under Poisson noise, `plain` otherwise (the default).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dps_exp import batch
from dps_exp.errors import ConfigError
from dps_exp.physics.base import Physics
from dps_exp.physics.noise import LEVELS

DistanceName = Literal["auto", "plain", "weighted", "official"]
POISSON_ONLY = ("weighted", "official")


def resolve(name: DistanceName, physics: Physics) -> str:
    """The distance `name` stands for under this forward model's noise; ConfigError where it does not apply."""
    kind = physics.noise.kind
    if name == "auto":
        return "weighted" if kind == "poisson" else "plain"
    if name in POISSON_ONLY and kind != "poisson":
        raise ConfigError(
            f"sampler.distance={name} weighs Poisson counts, but physics.noise.kind={kind}: use "
            "sampler.distance=plain (or auto), or physics/noise=poisson"
        )
    return name


class Distance:
    """The distance between y (B, …) and A x for predictions x (B, C, H, W), as a (B,) tensor, differentiable
    in x. Weights that depend on y alone are computed once here, not at every step."""

    def __init__(self, name: DistanceName, physics: Physics, y: Tensor):
        self.name, self.physics, self.y = resolve(name, physics), physics, y
        if self.name == "weighted":
            self.half_scale = LEVELS * batch.per_sample(physics.noise.rate, y) / 2
            self.root = (2 * ((y + 1) * self.half_scale).clamp_min(1.0)).sqrt()  # √(2 · counts)
        elif self.name == "official":
            self.factor = (1.0 / y.abs()).flatten(1).mean(1)

    def __call__(self, x: Tensor) -> Tensor:
        r = self.y - self.physics.A(x)
        if self.name == "weighted":
            r = r * self.half_scale / self.root
        norm = torch.linalg.vector_norm(r.flatten(1), dim=1)
        return norm * self.factor if self.name == "official" else norm
