"""Diffusion posterior sampling (Chung et al., ICLR 2023): a reverse-diffusion update plus a likelihood step."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dps_exp.batch import per_sample
from dps_exp.config import PER_SAMPLE, Range
from dps_exp.denoisers.base import Denoiser, Prediction
from dps_exp.errors import ConfigError
from dps_exp.physics.base import Physics
from dps_exp.samplers.base import Callback, NoiseSource, Sampler, SampleResult
from dps_exp.samplers.consistency import Distance, DistanceName, resolve
from dps_exp.samplers.updates import DDIMUpdate, LearnedVarianceUpdate
from dps_exp.schedule import Schedule


def guidance(x_t: Tensor, t: Tensor, distance: Distance, denoiser: Denoiser) -> tuple[Prediction, Tensor]:
    """x̂0 = clip(D(x_t, t), −1, 1) and g = ∇_{x_t} ‖y − A x̂0‖, per sample.

    One forward and one input-gradient backward pass; the prior's weights are frozen, so autograd builds
    the graph for x_t alone. Returns the prediction (x0 clipped, all detached) and g.
    """
    with torch.enable_grad():
        x_t = x_t.detach().requires_grad_(True)
        pred = denoiser(x_t, t)
        x0 = pred.x0.clamp(-1.0, 1.0)
        (g,) = torch.autograd.grad(distance(x0).sum(), x_t)
    detached = Prediction(pred.eps.detach(), x0.detach(), None if pred.var is None else pred.var.detach())
    return detached, g


def keep_finite(x: Tensor, x_next: Tensor, diverged_at: Tensor, step: int) -> tuple[Tensor, Tensor]:
    """Freeze samples whose iterate stopped being finite at their last finite value; record the step.

    Stays on the device (no host sync): the divergence record is read once, after the loop.
    """
    finite = torch.isfinite(x_next).flatten(1).all(dim=1)
    diverged_at = torch.where(~finite & (diverged_at < 0), step, diverged_at)
    alive = (diverged_at < 0).view(-1, *([1] * (x.ndim - 1)))
    return torch.where(alive, x_next, x), diverged_at


class DPS(Sampler):
    """DPS (dps_facts.md §1–2): the tutorial's loop, a DDIM(η) update plus −ζ∇‖y − A x̂0‖, or the official code's
    ancestral DDPM step with the prior's learned variance.

    Each step, for the current timestep t and the next one t':

        x̂0   = clip(D(x_t, t), −1, 1)                 prior's estimate of the clean image
        g    = ∇_{x_t} ‖y − A x̂0‖                      likelihood gradient (per sample; `distance` below)
        x_t' = update(x_t, x̂0, ε) − ζ g                reverse-diffusion update, then the DPS step

    `variance=eta`: the tutorial's DDIM(η) update over the stride-`1000 // steps` timesteps (η = 1 is
    DDPM-like). `variance=learned`: the official code's ancestral DDPM step with the network's learned
    variance over guided-diffusion's respaced timesteps (exactly `steps` of them; the paper runs 1000).
    η and ζ (`step_size`) may be (B,) tensors: one value per sample. `distance` is the norm of the likelihood
    step (dps_exp/samplers/consistency.py): by default the noise model's, the plain norm under Gaussian noise
    and the paper's weighted norm under Poisson noise; `official` is the official code's Poisson term.

    Args:
        steps: stride 1000 // steps (`variance=eta`); exactly `steps` respaced timesteps (`variance=learned`)
        eta: η: 1 is DDPM-like ancestral sampling, 0 deterministic DDIM
        step_size: ζ, the factor on ∇‖y − A x̂0‖ (1/√2 = the tutorial)
        variance: `eta`: the tutorial's DDIM(η) update; `learned`: the official code's ancestral DDPM step with the
            prior's learned variance (needs `denoiser=ffhq`, `imagenet` or `random_adm`). Paper: learned
        distance: the likelihood step's norm: `auto` (the noise model's: the plain ‖y − A x̂0‖ under Gaussian noise,
            the paper's weighted norm under Poisson noise), `plain`, `weighted` (Poisson only) or `official` (the
            official code's Poisson term ‖y − A x̂0‖ · mean 1/|y|, Poisson only; its step sizes carry over)
    """

    divergence_hint = "a smaller sampler.step_size usually helps"

    def __init__(
        self,
        steps: Annotated[int, Range(1, 1000)] = 1000,
        eta: Annotated[float, Range(0, 1), PER_SAMPLE] = 1.0,
        step_size: Annotated[float, Range(0, None), PER_SAMPLE] = 1 / math.sqrt(2),
        variance: Literal["eta", "learned"] = "eta",
        distance: DistanceName = "auto",
    ):
        self.steps, self.eta, self.step_size, self.variance = steps, eta, step_size, variance
        self.distance = distance

    def check(self, prior: Denoiser, physics: Physics) -> None:
        if self.variance == "learned" and not prior.learned_variance:
            raise ConfigError(
                "sampler.variance=learned needs a prior with learned variance (denoiser=ffhq, imagenet or "
                f"random_adm); {type(prior).__name__} has none (use sampler.variance=eta)"
            )
        resolve(self.distance, physics)

    def timesteps(self, schedule: Schedule) -> Tensor:
        return schedule.timesteps(self.steps) if self.variance == "eta" else schedule.respaced(self.steps)

    def update_rule(self, schedule: Schedule, ts: Tensor, batch: int) -> DDIMUpdate | LearnedVarianceUpdate:
        if self.variance == "eta":
            return DDIMUpdate(schedule, ts, self.eta, batch)
        return LearnedVarianceUpdate(schedule, ts, batch)

    def sample(
        self,
        y: Tensor,
        physics: Physics,
        prior: Denoiser,
        schedule: Schedule,
        noise: NoiseSource,
        callback: Callback | None = None,
        progress: bool = False,
    ) -> SampleResult:
        """Draw x_T from `noise`, then walk the timesteps; `noise` also supplies each step's ε."""
        x = noise()
        ts = self.timesteps(schedule)
        update = self.update_rule(schedule, ts, x.shape[0])
        zeta = per_sample(self.step_size, x)
        distance = Distance(self.distance, physics, y)
        diverged_at = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        for i in tqdm(range(len(ts)), desc="DPS steps", leave=False, disable=not progress):
            pred, g = guidance(x, ts[i].expand(x.shape[0]), distance, prior)
            x_next = update(i, x, pred, noise()) - zeta * g
            x, diverged_at = keep_finite(x, x_next, diverged_at, i)
            if callback is not None:
                callback(i, x, pred.x0)
        return SampleResult(x=x, diverged_at=diverged_at, nfe=len(ts))
