"""Diffusion posterior sampling (Chung et al., ICLR 2023): a reverse-diffusion update plus a likelihood step."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dps_exp.batch import per_sample, randn
from dps_exp.config import PER_SAMPLE, Range
from dps_exp.denoisers.base import Denoiser, Prediction
from dps_exp.errors import ConfigError
from dps_exp.physics.base import Physics
from dps_exp.samplers.base import Callback, NoiseSource, Runner, Sampler, SampleResult
from dps_exp.samplers.chains import Chains
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


def keep_finite(x: Tensor, x_next: Tensor, diverged_at: Tensor, step: int | Tensor) -> tuple[Tensor, Tensor]:
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
    continuous = True

    def __init__(
        self,
        steps: Annotated[int, Range(1, 1000), PER_SAMPLE] = 1000,
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

    def timesteps(self, schedule: Schedule, steps: int | None = None) -> Tensor:
        steps = self.steps if steps is None else steps
        return schedule.timesteps(steps) if self.variance == "eta" else schedule.respaced(steps)

    @property
    def update_class(self) -> type[DDIMUpdate] | type[LearnedVarianceUpdate]:
        return DDIMUpdate if self.variance == "eta" else LearnedVarianceUpdate

    def update_rule(self, schedule: Schedule, ts: Tensor, batch: int, eta=None) -> DDIMUpdate | LearnedVarianceUpdate:
        """The update over the timesteps `ts`, shared by `batch` samples (η: this sampler's, or `eta`)."""
        if self.variance == "eta":
            return DDIMUpdate(schedule, ts, self.eta if eta is None else eta, batch)
        return LearnedVarianceUpdate(schedule, ts, batch)

    def chain(self, schedule: Schedule, b: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        """Sample b's walk: its timesteps (S,) and coefficient tables ({name: S values}), from its own step count
        and η (per-sample values may differ: `sampler.steps` is per sample too)."""
        steps = int(self.steps[b]) if isinstance(self.steps, Tensor) else self.steps
        eta = float(self.eta[b]) if isinstance(self.eta, Tensor) else self.eta
        ts = self.timesteps(schedule, steps)
        return ts, self.update_rule(schedule, ts, 1, eta).tables

    def length(self, schedule: Schedule) -> int:
        """Network evaluations of one sample with this sampler's (single) step count."""
        return len(self.timesteps(schedule))

    def sample(self, y: Tensor, physics: Physics, prior: Denoiser, schedule: Schedule, noise: NoiseSource,
               callback: Callback | None = None, progress: bool = False) -> SampleResult:  # fmt: skip
        """Draw x_T from `noise`, then walk each sample's timesteps (all together; a sample whose chain is
        shorter stops changing at its end); `noise` also supplies each step's ε."""
        x = noise()
        B = x.shape[0]
        walks = [self.chain(schedule, b) for b in range(B)]
        chains = Chains(B, max(len(ts) for ts, _ in walks), tuple(walks[0][1]), x.device)
        for b, (ts, tables) in enumerate(walks):
            chains.set(b, ts, tables)
        same_length = len(set(chains.length)) == 1
        apply = self.update_class.apply
        zeta = per_sample(self.step_size, x)
        distance = Distance(self.distance, physics, y)
        diverged_at = torch.full((B,), -1, dtype=torch.long, device=x.device)
        for i in tqdm(range(max(chains.length)), desc="DPS steps", leave=False, disable=not progress):
            t, c, walking = chains.now(B)
            pred, g = guidance(x, t, distance, prior)
            x_next = apply(c, x, pred, noise()) - zeta * g
            if not same_length:  # a sample past the end of its chain keeps its result
                x_next = torch.where(walking.view(-1, 1, 1, 1), x_next, x)
            x, diverged_at = keep_finite(x, x_next, diverged_at, i)
            chains.advance(B)
            if callback is not None:
                callback(i, x, pred.x0)
        return SampleResult(x=x, diverged_at=diverged_at, nfe=list(chains.length))

    def runner(self, schedule: Schedule, prior: Denoiser, capacity: int, shape, device) -> DPSRunner:
        return DPSRunner(self, schedule, prior, capacity, shape, device)


class DPSRunner(Runner):
    """Continuous batching of DPS chains: a sample takes a free slot with its own chain (steps, η, ζ,
    operator, measurement and random stream), walks one step per network pass shared with the other slots, and
    leaves at the end of its chain, its slot taken by the next. Its result is the one it would have alone."""

    def __init__(self, template: DPS, schedule: Schedule, prior: Denoiser, capacity: int, shape, device):
        ts, tables = template.chain(schedule)
        self.schedule, self.prior, self.capacity = schedule, prior, capacity
        self.apply = template.update_class.apply
        self.chains = Chains(capacity, len(ts), tuple(tables), device)
        self.x = torch.zeros(capacity, *shape, device=device)
        self.zeta = torch.zeros(capacity, device=device)
        self.diverged_at = torch.full((capacity,), -1, dtype=torch.long, device=device)
        self.distances: list = [None] * capacity
        self.gens: list = [None] * capacity
        self.tokens: list = [None] * capacity
        self.n = 0

    def admit(self, token, sampler: DPS, physics: Physics, y: Tensor, gen: torch.Generator) -> None:
        b, self.n = self.n, self.n + 1
        ts, tables = sampler.chain(self.schedule)
        self.chains.ensure(len(ts))
        self.chains.set(b, ts, tables)
        self.x[b] = randn(self.x[:1].shape, [gen])[0]  # x_T: the stream's first draw, as in `sample`
        self.zeta[b], self.diverged_at[b] = float(sampler.step_size), -1
        self.distances[b] = Distance(sampler.distance, physics, y)
        self.gens[b], self.tokens[b] = gen, token

    def step(self) -> list[tuple[object, Tensor, Tensor, int]]:
        n = self.n
        t, c, _ = self.chains.now(n)
        pred, g = guidance(self.x[:n], t, SlotDistances(self.distances[:n]), self.prior)
        eps = randn(self.x[:n].shape, self.gens[:n])
        x_next = self.apply(c, self.x[:n], pred, eps) - self.zeta[:n].view(-1, 1, 1, 1) * g
        self.x[:n], self.diverged_at[:n] = keep_finite(self.x[:n], x_next, self.diverged_at[:n], self.chains.pos[:n])
        done = self.chains.advance(n)
        finished = [
            (self.tokens[b], self.x[b].clone(), self.diverged_at[b].clone(), self.chains.length[b]) for b in done
        ]
        for b in sorted(done, reverse=True):  # the last occupied slot takes each freed one
            last = self.n - 1
            if b != last:
                self.chains.move(last, b)
                self.x[b], self.zeta[b], self.diverged_at[b] = self.x[last], self.zeta[last], self.diverged_at[last]
                for slots in (self.distances, self.gens, self.tokens):
                    slots[b] = slots[last]
            self.n = last
        return finished


class SlotDistances:
    """Each slot's own distance (its operator and measurement), as one (n,) distance over the slots."""

    def __init__(self, distances: list[Distance]):
        self.distances = distances

    def __call__(self, x0: Tensor) -> Tensor:
        return torch.cat([d(x0[b : b + 1]) for b, d in enumerate(self.distances)])
