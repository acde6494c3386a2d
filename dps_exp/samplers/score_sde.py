"""Score-SDE / ILVR, the DPS paper's projection baseline: a reverse-diffusion step, then the measured part of the
iterate replaced by the measurement noised to the step's timestep (the official DPS code's `projection`
conditioning)."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dps_exp.batch import per_sample
from dps_exp.config import PER_SAMPLE, Range
from dps_exp.denoisers.base import Denoiser, Prediction
from dps_exp.errors import ConfigError
from dps_exp.physics.base import LinearPhysics, Physics
from dps_exp.samplers.base import Callback, NoiseSource, SampleResult
from dps_exp.samplers.consistency import Distance
from dps_exp.samplers.dps import DPS, keep_finite
from dps_exp.schedule import Schedule


def require_projection(physics: Physics, sampler: str) -> None:
    """ConfigError unless x + A⁺(y − A x) can be computed exactly: a linear operator whose `init` is A⁺."""
    if not isinstance(physics, LinearPhysics):
        raise ConfigError(
            f"sampler={sampler} replaces the measured part of x, which needs a linear operator; "
            f"{type(physics).__name__} is not linear (use sampler=dps)"
        )
    if not physics.exact_pinv:
        raise ConfigError(
            f"sampler={sampler} needs the operator's exact pseudo-inverse A⁺ (inpainting, super-resolution, "
            f"denoising); {type(physics).__name__} has none (use sampler=dps)"
        )


class Projection:
    """The official code's projection onto the noised measurement, for step i of the timesteps `ts`:

        y_t = √ᾱ_t y + √(1 − ᾱ_t) ε_y          `q_sample(measurement, t)`: y noised to t = ts[i], the timestep
                                                the step STARTS from (the iterate it corrects is already at t')
        x  ← x + A⁺(y_t − A x)                  = (I − A⁺A) x + A⁺ y_t: the measured part replaced by y_t

    ε_y ~ N(0, I) has the measurement's shape: the first numel(y) entries of each sample's image-shaped draw.
    """

    def __init__(self, physics: LinearPhysics, y: Tensor, schedule: Schedule, ts: Tensor, image_size: int):
        self.size = y[0].numel()
        if self.size > image_size:
            raise ValueError(f"measurements of {self.size} values exceed the {image_size} of an image: no ε_y")
        ab = schedule.alpha_bar(ts).view(-1, 1, 1, 1, 1)
        self.signal, self.noise = ab.sqrt().to(y), (1 - ab).sqrt().to(y)  # (S, 1, 1, 1, 1): row i is step i's
        self.physics, self.y = physics, y

    def noised(self, i: int, eps: Tensor) -> Tensor:
        """y_t for step i, given an image-shaped standard-normal draw eps (B, C, H, W)."""
        return self.signal[i] * self.y + self.noise[i] * eps.flatten(1)[:, : self.size].view_as(self.y)

    def __call__(self, i: int, x: Tensor, eps: Tensor) -> Tensor:
        return x + self.physics.init(self.noised(i, eps) - self.physics.A(x))


class ScoreSDE(DPS):
    """Score-SDE (ILVR) as the official DPS code's `projection` conditioning, the DPS paper's baseline (1000 NFE):
    DPS's reverse step without its likelihood step, then the measured part replaced by the noised measurement.

    Each step, for the current timestep t and the next one t':

        x̂0   = clip(D(x_t, t), −1, 1)                 prior's estimate of the clean image (no gradient taken)
        x_t' = update(x_t, x̂0, ε)                      DPS's reverse-diffusion update (`variance`)
        y_t  = √ᾱ_t y + √(1 − ᾱ_t) ε_y                 the measurement noised to t, as the official code
        x_t' ← x_t' + A⁺(y_t − A x_t')                  the measured part of x_t' replaced by y_t

    A⁺ is the operator's exact pseudo-inverse: inpainting x ← (1 − m) ⊙ x + m ⊙ y_t, super-resolution the
    resize's Moore–Penrose inverse, denoising x ← y_t; other operators are refused. One network evaluation a
    step (a forward pass only). η may be a (B,) tensor: one value per sample.

    Args:
        steps: stride 1000 // steps (`variance=eta`); exactly `steps` respaced timesteps (`variance=learned`). Paper:
            1000
        eta: η of the DDIM(η) update (`variance=eta`): 1 is DDPM-like ancestral sampling, 0 deterministic DDIM
        variance: `learned`: the official code's ancestral DDPM step with the prior's learned variance (needs
            `denoiser=ffhq`, `imagenet` or `random_adm`; the paper's); `eta`: the tutorial's DDIM(η) update
    """

    name = "score_sde"
    divergence_hint = "Score-SDE takes no gradient step: a divergence points at the prior or the measurement"
    continuous = False  # DPS's continuous runner takes no projection step: a sweep over steps runs per length

    def __init__(
        self,
        steps: Annotated[int, Range(1, 1000)] = 1000,
        eta: Annotated[float, Range(0, 1), PER_SAMPLE] = 1.0,
        variance: Literal["eta", "learned"] = "learned",
    ):
        super().__init__(steps=steps, eta=eta, step_size=0.0, variance=variance)

    def check(self, prior: Denoiser, physics: Physics) -> None:
        require_projection(physics, self.name)
        super().check(prior, physics)

    def predict(self, x: Tensor, t: Tensor, distance: Distance, prior: Denoiser) -> tuple[Prediction, Tensor | None]:
        """The prior's prediction with x̂0 clipped, and the likelihood gradient: none here (no backward pass)."""
        with torch.no_grad():
            pred = prior(x, t)
        return Prediction(pred.eps, pred.x0.clamp(-1.0, 1.0), pred.var), None

    def sample(self, y: Tensor, physics: Physics, prior: Denoiser, schedule: Schedule, noise: NoiseSource,
               callback: Callback | None = None, progress: bool = False) -> SampleResult:  # fmt: skip
        """Draw x_T from `noise`, then walk the timesteps; each step draws the update's ε, then ε_y."""
        x = noise()
        ts = self.timesteps(schedule)
        update = self.update_rule(schedule, ts, x.shape[0])
        zeta = per_sample(self.step_size, x)
        distance = Distance(self.distance, physics, y)
        project = Projection(physics, y, schedule, ts, x[0].numel())
        diverged_at = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        for i in tqdm(range(len(ts)), desc=f"{self.name} steps", leave=False, disable=not progress):
            pred, g = self.predict(x, ts[i].expand(x.shape[0]), distance, prior)
            x_next = update(i, x, pred, noise())
            if g is not None:
                x_next = x_next - zeta * g
            x, diverged_at = keep_finite(x, project(i, x_next, noise()), diverged_at, i)
            if callback is not None:
                callback(i, x, pred.x0)
        return SampleResult(x=x, diverged_at=diverged_at, nfe=len(ts))
