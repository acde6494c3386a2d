"""DDRM (Kawar, Elad, Ermon & Song, NeurIPS 2022, "Denoising Diffusion Restoration Models"): DDIM-like sampling in
the spectral space of the operator's SVD, each coordinate conditioned on y as its singular value allows."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dps_exp.batch import per_sample
from dps_exp.config import PER_SAMPLE, Range
from dps_exp.denoisers.base import Denoiser
from dps_exp.errors import ConfigError
from dps_exp.physics.base import LinearPhysics, Physics
from dps_exp.samplers.base import Callback, NoiseSource, Sampler, SampleResult
from dps_exp.samplers.dps import keep_finite
from dps_exp.schedule import Schedule

WITH_SVD = "denoise, inpaint_random, inpaint_random_paper, inpaint_box, super_resolution or gaussian_blur"


class DDRM(Sampler):
    """DDRM (Kawar et al. 2022): DDIM-like steps in the operator's spectral space, each coordinate conditioned on y as
    its singular value allows, as the official code's `efficient_generalized_steps`.

    With A = U diag(s) Vᵀ (physics.svd()), spectral coordinates x̄ = Vᵀ x, ȳ = Uᵀ y / s (where s > 0), the
    variance-exploding levels σ_t = √(1 − ᾱ_t) / √ᾱ_t (x_t = √ᾱ_t · V x̄_t) and σ_y the measurement noise:

        x̄_T  = ȳ + √(σ_T² − σ_y²/s²) z          where s σ_T > σ_y, else σ_T z
        each step t → t' (σ' = σ_{t'}, 0 after the last), with x̄0 = Vᵀ x̂0(x_t, t), ε̄ = Vᵀ ε̂(x_t, t), z ~ N(0, I):
          s = 0            x̄_t' = x̄0 + √(1−η²) σ' ε̄ + η σ' z                          (unmeasured: DDIM(η))
          s σ' < σ_y       x̄_t' = x̄0 + √(1−η²) σ' s (ȳ − x̄0) / σ_y + η σ' z           (y noisier than x_t')
          s σ' ≥ σ_y       x̄_t' = η_b ȳ + (1 − η_b) x̄0 + √(σ'² − η_b² σ_y²/s²) z       (y less noisy)

    and the result is V x̄ after the last step (x̂0 of the last prediction wherever σ_y > 0). x̂0 is not clipped,
    as in the official code (whose priors are the full ADM networks); `clip` clips it to [-1, 1] and takes ε̂ from
    the clipped x̂0, as DPS and guided-diffusion's `clip_denoised` do. Timesteps: the official code's
    `range(0, T, T // steps)`, walked backwards (20 steps: 950, 900, …, 0; NFE = 20). Needs an operator with an
    exact SVD and Gaussian (or no) noise. η and η_b may differ per sample.

    Where the official code differs: it starts from x_T = V x̄_T / σ_T, not √ᾱ_T V x̄_T (a factor 1/√(1 − ᾱ_T),
    1 + 5e-5 at T = 950); singular values it thresholds to 0 stay in its "y noisier" branch with s = 0, here they
    are unmeasured (the paper's s = 0 case, deepinv's too); at s σ' = σ_y exactly it takes the unmeasured branch.

    Args:
        steps: stride T // steps over the training timesteps, as the official code (20: 950, 900, …, 0). Paper
            (DPS's DDRM rows): 20
        eta: η, the fresh-noise share of the unmeasured and noisier-than-y coordinates. Paper: 0.85
        eta_b: η_b, the weight of ȳ in coordinates measured less noisily than x_t'. Paper: 1.0
        zero: singular values (each 1-D factor's for a separable operator) below this count as 0, unmeasured; the
            official code's SR and deblurring use 3e-2. Masks (0/1) and denoising (1) are unaffected
        clip: clip x̂0 to [-1, 1] (and take ε̂ from it) at every step. The official code does not; the bundled
            `natural32` prior needs it at 20 steps (unclipped, its 20-step samples leave the image range)
    """

    divergence_hint = "with noiseless measurements (σ_y = 0) raise sampler.zero: ȳ = Uᵀy/s amplifies small s"

    def __init__(
        self,
        steps: Annotated[int, Range(1, 1000)] = 20,
        eta: Annotated[float, Range(0, 1), PER_SAMPLE] = 0.85,
        eta_b: Annotated[float, Range(0, 1), PER_SAMPLE] = 1.0,
        zero: Annotated[float, Range(0, 1, hi_open=True)] = 3e-2,
        clip: bool = False,
    ):
        self.steps, self.eta, self.eta_b, self.zero, self.clip = steps, eta, eta_b, zero, clip

    def check(self, prior: Denoiser, physics: Physics) -> None:
        name = type(physics).__name__
        if not isinstance(physics, LinearPhysics) or physics.svd() is None:
            raise ConfigError(f"sampler=ddrm needs an operator with an exact SVD ({WITH_SVD}); {name} has none")
        if physics.noise.kind == "poisson":
            raise ConfigError(
                "sampler=ddrm assumes Gaussian measurement noise, not physics.noise.kind=poisson "
                "(use physics/noise=gaussian or physics.noise.kind=none)"
            )

    def length(self, schedule: Schedule) -> int:
        """One network evaluation a step."""
        return len(schedule.timesteps(self.steps))

    def sample(self, y: Tensor, physics: Physics, prior: Denoiser, schedule: Schedule, noise: NoiseSource,
               callback: Callback | None = None, progress: bool = False) -> SampleResult:  # fmt: skip
        """Draw x_T around ȳ from `noise`, then walk the timesteps; `noise` also supplies each step's z."""
        svd = physics.svd().truncated(self.zero).to(y)
        ts = schedule.timesteps(self.steps)
        ab = schedule.alpha_bar(torch.cat([ts, ts.new_full((1,), -1)]))
        root_ab, sigma = ab.sqrt().tolist(), ((1 - ab) / ab).sqrt().tolist()  # host numbers, read before the loop
        z = noise()
        B = z.shape[0]
        sigma_y = per_sample(physics.noise.sigma if physics.noise.kind == "gaussian" else 0.0, z)
        eta, eta_b = per_sample(self.eta, z), per_sample(self.eta_b, z)

        s = svd.s
        measured = s > 0
        s_safe = torch.where(measured, s, 1.0)
        Uty = svd.Ut(y)
        y_bar = torch.where(measured, Uty / s_safe, 0.0)
        nsr = torch.where(measured, sigma_y / s_safe, torch.inf)  # σ_y / s: the noise level of ȳ
        nsr_b = torch.where(measured, eta_b * nsr, 0.0)
        sigma_y_safe = torch.where(torch.as_tensor(sigma_y, device=z.device) > 0, sigma_y, 1.0)

        x_bar = torch.where(nsr < sigma[0], y_bar + (sigma[0] ** 2 - nsr**2).clamp_min(0).sqrt() * z, sigma[0] * z)
        x = root_ab[0] * svd.V(x_bar)
        diverged_at = torch.full((B,), -1, dtype=torch.long, device=x.device)
        for i in tqdm(range(len(ts)), desc="DDRM steps", leave=False, disable=not progress):
            t = ts[i].expand(B)
            pred = prior(x, t)
            x0, eps = pred.x0, pred.eps
            if self.clip:
                x0 = x0.clamp(-1.0, 1.0)
                eps = prior.eps_from_x0(x, t, x0)
            x0_bar, eps_bar, z = svd.Vt(x0), svd.Vt(eps), noise()
            nxt = sigma[i + 1]
            unmeasured = x0_bar + (1 - eta**2) ** 0.5 * nxt * eps_bar + eta * nxt * z
            noisier = x0_bar + (1 - eta**2) ** 0.5 * nxt * (Uty - s * x0_bar) / sigma_y_safe + eta * nxt * z
            cleaner = eta_b * y_bar + (1 - eta_b) * x0_bar + (nxt**2 - nsr_b**2).clamp_min(0).sqrt() * z
            x_bar = torch.where(~measured, unmeasured, torch.where(nsr <= nxt, cleaner, noisier))
            x_next = root_ab[i + 1] * svd.V(x_bar)
            x, diverged_at = keep_finite(x, x_next, diverged_at, i)
            if callback is not None:
                callback(i, x, x0)
        return SampleResult(x=x, diverged_at=diverged_at, nfe=self.length(schedule))
