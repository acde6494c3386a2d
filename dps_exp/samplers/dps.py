"""Diffusion posterior sampling (Chung et al., ICLR 2023) with the tutorial's DDIM(η) update."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dps_exp.batch import per_sample
from dps_exp.config import PER_SAMPLE, Range
from dps_exp.denoisers.base import Denoiser, Prediction
from dps_exp.physics.base import Physics
from dps_exp.schedule import Schedule

NoiseSource = Callable[[], Tensor]
"""Returns the next standard-normal draw, shaped like the image batch (B, C, H, W)."""

Callback = Callable[[int, Tensor, Tensor], None]
"""Called after each step with (step index, x_next, x̂0); for logging, never for control flow."""


@dataclass
class SampleResult:
    x: Tensor
    """The final iterate x_0 (B, C, H, W), on the [-1, 1] scale, not clipped."""
    diverged_at: Tensor
    """(B,) long: the step at which the sample stopped being finite (its x is then the last finite
    iterate), or −1."""


def guidance(x_t: Tensor, t: Tensor, y: Tensor, physics: Physics, denoiser: Denoiser) -> tuple[Prediction, Tensor]:
    """x̂0 = clip(D(x_t, t), −1, 1) and g = ∇_{x_t} ‖y − A x̂0‖, per sample.

    One forward and one input-gradient backward pass; the prior's weights are frozen, so autograd builds
    the graph for x_t alone. Returns the prediction (x0 clipped, all detached) and g.
    """
    with torch.enable_grad():
        x_t = x_t.detach().requires_grad_(True)
        pred = denoiser(x_t, t)
        x0 = pred.x0.clamp(-1.0, 1.0)
        (g,) = torch.autograd.grad(physics.distance(y, x0).sum(), x_t)
    detached = Prediction(pred.eps.detach(), x0.detach(), None if pred.var is None else pred.var.detach())
    return detached, g


def next_timesteps(ts: Tensor) -> Tensor:
    """The timestep each step lands on: the following entry of `ts`, and −1 (a clean image) after the last."""
    return torch.cat([ts[1:], ts.new_full((1,), -1)])


def keep_finite(x: Tensor, x_next: Tensor, diverged_at: Tensor, step: int) -> tuple[Tensor, Tensor]:
    """Freeze samples whose iterate stopped being finite at their last finite value; record the step.

    Stays on the device (no host sync): the divergence record is read once, after the loop.
    """
    finite = torch.isfinite(x_next).flatten(1).all(dim=1)
    diverged_at = torch.where(~finite & (diverged_at < 0), step, diverged_at)
    alive = (diverged_at < 0).view(-1, *([1] * (x.ndim - 1)))
    return torch.where(alive, x_next, x), diverged_at


class DPS:
    """DPS with the DDIM(η) update, as the tutorial (reference/seed_tutorial_demo_dps.rst) and
    dps_facts.md §1 write it. With ᾱ = ᾱ_t and ᾱ' = ᾱ_{t'} for the next timestep t' of the walk:

        x̂0    = clip(D(x_t, t), −1, 1)
        g     = ∇_{x_t} ‖y − A x̂0‖
        σ̃     = η · √((1 − ᾱ/ᾱ') (1 − ᾱ') / (1 − ᾱ))
        c     = √(1 − ᾱ' − σ̃²)
        x_t'  = (√ᾱ' − c √ᾱ / √(1 − ᾱ)) · x̂0  +  c / √(1 − ᾱ) · x_t  +  σ̃ ε  −  ζ g

    η = 1 is the DDPM-like ancestral scheme, η = 0 deterministic DDIM. η and ζ (step_size) may be (B,)
    tensors: one value per sample.
    """

    def __init__(
        self,
        steps: Annotated[int, Range(1, 1000)] = 1000,
        eta: Annotated[float, Range(0, 1), PER_SAMPLE] = 1.0,
        step_size: Annotated[float, Range(0, None), PER_SAMPLE] = 1 / math.sqrt(2),
    ):
        self.steps = steps
        self.eta = eta
        self.step_size = step_size

    def timesteps(self, schedule: Schedule) -> Tensor:
        return schedule.timesteps(self.steps)

    def coefficients(self, schedule: Schedule, ts: Tensor, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        """(c_x0, c_xt, σ̃), each (S, B, 1, 1, 1) float32, computed once in float64 before the loop."""
        ab, ab_next = schedule.alpha_bar(ts), schedule.alpha_bar(next_timesteps(ts))
        eta = torch.as_tensor(self.eta, dtype=torch.float64, device=ts.device).expand(batch)
        sigma = eta[None, :] * ((1 - ab / ab_next) * (1 - ab_next) / (1 - ab)).sqrt()[:, None]
        c = (1 - ab_next[:, None] - sigma**2).clamp_min(0).sqrt()
        c_x0 = ab_next.sqrt()[:, None] - c * (ab / (1 - ab)).sqrt()[:, None]
        c_xt = c / (1 - ab).sqrt()[:, None]
        return tuple(v.float().view(len(ts), batch, 1, 1, 1) for v in (c_x0, c_xt, sigma))

    def step(self, x_t: Tensor, pred: Prediction, g: Tensor, eps: Tensor, c_x0, c_xt, sigma, zeta) -> Tensor:
        """The update line above, with x̂0 = pred.x0 and ε the fresh noise."""
        return c_x0 * pred.x0 + c_xt * x_t + sigma * eps - zeta * g

    def sample(
        self,
        y: Tensor,
        physics: Physics,
        denoiser: Denoiser,
        schedule: Schedule,
        noise: NoiseSource,
        callback: Callback | None = None,
        progress: bool = False,
    ) -> SampleResult:
        """Draw x_T from `noise`, then walk the timesteps; `noise` also supplies each step's ε."""
        x = noise()
        ts = self.timesteps(schedule)
        c_x0, c_xt, sigma = self.coefficients(schedule, ts, x.shape[0])
        zeta = per_sample(self.step_size, x)
        diverged_at = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        for i in tqdm(range(len(ts)), desc="DPS steps", leave=False, disable=not progress):
            t = ts[i].expand(x.shape[0])
            pred, g = guidance(x, t, y, physics, denoiser)
            x_next = self.step(x, pred, g, noise(), c_x0[i], c_xt[i], sigma[i], zeta)
            x, diverged_at = keep_finite(x, x_next, diverged_at, i)
            if callback is not None:
                callback(i, x, pred.x0)
        return SampleResult(x=x, diverged_at=diverged_at)
