"""What the ADMM baselines share: scaled-form ADMM for a least-squares data term and one prior step.

Both `admm_tv` and `pnp_admm` solve (or, for a plug-in denoiser, act as if they solve)

    min_x ½‖y − A x‖² + g(x)

by splitting x = z (Boyd et al. 2011, §3.1.1, scaled form; the order of scico's `ADMM`, which the DPS paper's
baselines ran). From z₀ = A⁺y (the operator's `init`), u₀ = 0, each iteration k:

    x_{k+1} = argmin_x ½‖y − A x‖² + ρ/2 ‖x − (z_k − u_k)‖²,  i.e.  (AᵀA + ρI) x = Aᵀy + ρ (z_k − u_k)
    z_{k+1} = prox_{g/ρ}(x_{k+1} + u_k)                           the prior step (TV prox, or a denoiser)
    u_{k+1} = u_k + x_{k+1} − z_{k+1}

The x-update is solved by conjugate gradients with the operator's exact adjoint `A_T`, warm-started from the
previous x: a fixed number of steps per sample, so no host sync. For a projection (inpainting, denoising) AᵀA + ρI
has two eigenvalues and CG is exact after two steps; blurs and super-resolution need more. The reconstruction is
x_K (scico's `solver.x`, the data step's iterate). No randomness: the `noise` source is never read.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dps_exp.batch import per_sample
from dps_exp.denoisers.base import Denoiser
from dps_exp.errors import ConfigError
from dps_exp.physics.base import LinearPhysics, Physics
from dps_exp.samplers.base import Callback, NoiseSource, Sampler, SampleResult
from dps_exp.samplers.dps import keep_finite
from dps_exp.schedule import Schedule

PriorStep = Callable[[Tensor], Tensor]
"""v (B, C, H, W) → z = prox_{g/ρ}(v): the prior step of one ADMM run (it may keep state between calls)."""


def dot(a: Tensor, b: Tensor) -> Tensor:
    """⟨a, b⟩ per sample, shaped (B, 1, …, 1) to broadcast over images."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.ndim - 1)))


def conjugate_gradient(apply: Callable[[Tensor], Tensor], b: Tensor, x: Tensor, steps: int) -> Tensor:
    """`steps` conjugate-gradient iterations from x towards M x = b, M = `apply` symmetric positive definite and
    acting on each sample alone; every scalar is per sample, so a sample's solve ignores the rest of its batch.
    Once a sample's residual is exactly zero its step is 0, not 0/0, and it stays put."""
    r = b - apply(x)
    d, rr = r, dot(r, r)
    for _ in range(steps):
        Md = apply(d)
        dMd = dot(d, Md)
        alpha = torch.where(dMd > 0, rr / dMd, torch.zeros_like(rr))
        x, r = x + alpha * d, r - alpha * Md
        rr_next = dot(r, r)
        d = r + torch.where(rr > 0, rr_next / rr, torch.zeros_like(rr)) * d
        rr = rr_next
    return x


def require_linear(name: str, physics: Physics) -> None:
    """ConfigError unless `physics` is linear with an adjoint (the x-update needs AᵀA and Aᵀy)."""
    if not isinstance(physics, LinearPhysics):
        raise ConfigError(
            f"sampler={name} needs a linear operator with an adjoint (its x-update solves (AᵀA + ρI) x = Aᵀy + …); "
            f"{type(physics).__name__} is not linear: use sampler=dps"
        )


class ADMM(Sampler):
    """Scaled-form ADMM with a least-squares data term; subclasses give the prior step (module docstring).

    `rho` may be a (B,) tensor: one ρ per sample.
    """

    name: str = "admm"
    """The sampler's config name, for messages."""
    divergence_hint = "ADMM is stopped at its last finite iterate; a larger sampler.rho usually steadies it"

    def __init__(self, iterations: int, rho: float | Tensor, cg_steps: int):
        self.iterations, self.rho, self.cg_steps = iterations, rho, cg_steps

    def check(self, prior: Denoiser, physics: Physics) -> None:
        require_linear(self.name, physics)

    @abstractmethod
    def prior_step(self, like: Tensor, prior: Denoiser, schedule: Schedule) -> PriorStep:
        """The prior step z = prox_{g/ρ}(v) for a run on images shaped like `like` (B, C, H, W)."""

    def sample(self, y: Tensor, physics: Physics, prior: Denoiser, schedule: Schedule, noise: NoiseSource,
               callback: Callback | None = None, progress: bool = False) -> SampleResult:  # fmt: skip
        """ADMM from z₀ = A⁺y; `callback(k, x_{k+1}, z_{k+1})` after each iteration. `noise` is not used."""
        z = physics.init(y)
        x, u = z, torch.zeros_like(z)
        rho = per_sample(self.rho, z)
        Aty = physics.A_T(y)
        prox = self.prior_step(z, prior, schedule)
        diverged_at = torch.full((z.shape[0],), -1, dtype=torch.long, device=z.device)
        with torch.no_grad():
            for k in tqdm(range(self.iterations), desc=f"{self.name} iterations", leave=False, disable=not progress):
                x_next = conjugate_gradient(
                    lambda v: physics.A_T(physics.A(v)) + rho * v, Aty + rho * (z - u), x, self.cg_steps
                )
                z_next = prox(x_next + u)
                u_next = u + x_next - z_next
                # freeze the whole state (x, z, u) of a sample at its last finite iterate
                state, diverged_at = keep_finite(
                    torch.cat([x, z, u], dim=1), torch.cat([x_next, z_next, u_next], dim=1), diverged_at, k
                )
                x, z, u = state.chunk(3, dim=1)
                if callback is not None:
                    callback(k, x, z)
        return SampleResult(x=x, diverged_at=diverged_at, nfe=self.length(schedule))
