"""Plug-and-play ADMM (Venkatakrishnan et al. 2013; Chan et al. 2017) with the run's diffusion prior as denoiser."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from dps_exp.config import PER_SAMPLE, Range
from dps_exp.denoisers.base import Denoiser
from dps_exp.errors import ConfigError
from dps_exp.physics.base import Physics
from dps_exp.samplers.admm import ADMM, PriorStep
from dps_exp.schedule import Schedule


def noise_levels(alphas_cumprod: Tensor) -> Tensor:
    """σ_t = √(1 − ᾱ_t) / √ᾱ_t, the Gaussian noise level of x_t / √ᾱ_t = x0 + σ_t n, for each timestep t."""
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


def timestep_for(sigma: float | Tensor, alphas_cumprod: Tensor, batch: int) -> Tensor:
    """(B,) long: for each sample the timestep whose σ_t is nearest its σ_d (in log σ, so equally fine at every
    scale); σ_d may be a number or a (B,) tensor. On the schedule's device, without a host sync."""
    levels = noise_levels(alphas_cumprod.double()).log()
    target = torch.as_tensor(sigma, dtype=torch.float64, device=levels.device).expand(batch).log()
    return (levels[None, :] - target[:, None]).abs().argmin(dim=1)


class GaussianDenoiser:
    """The prior as a Gaussian denoiser D_σ(v) ≈ E[x0 | v], v = x0 + σ n, n ~ N(0, I), σ = σ_t:

        x_t = √ᾱ_t v = √ᾱ_t x0 + √(1 − ᾱ_t) n        (exactly the forward process at timestep t)
        D_σ(v) = x̂0(x_t, t) = (x_t − √(1 − ᾱ_t) ε̂(x_t, t)) / √ᾱ_t     (Tweedie's estimate; not clipped)

    t is fixed per sample (`timestep_for`): one network evaluation a call.
    """

    def __init__(self, prior: Denoiser, sigma: float | Tensor, like: Tensor):
        self.prior = prior
        self.t = timestep_for(sigma, prior.alphas_cumprod, like.shape[0]).to(like.device)
        # the prior's own √ᾱ_t, the one its x̂0 divides by: D_σ(v) = v − (σ_t) ε̂ to the last bit
        self.scale = prior.sqrt_ab[self.t].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def __call__(self, v: Tensor) -> Tensor:
        return self.prior(self.scale * v, self.t).x0


class PnPADMM(ADMM):
    """PnP-ADMM: scaled-form ADMM (dps_exp/samplers/admm.py) whose prior step is a Gaussian denoiser,
    z = D_σd(x + u), in place of a proximal operator; the denoiser is the run's diffusion prior (Tweedie's x̂0 at
    the timestep of noise level σ_d), not the paper's DnCNN. NFE = iterations. Linear operators only.

    Deviation from the paper: the DPS paper's PnP-ADMM plugs in a pretrained DnCNN (scico's, trained at one noise
    level); those weights cannot be had here, so the denoiser is the run's own diffusion prior at a fixed noise level
    σ_d: Tweedie's x̂0 at the timestep t whose σ_t = √(1 − ᾱ_t)/√ᾱ_t is nearest σ_d (`GaussianDenoiser`). The
    tables' PnP-ADMM rows therefore measure ADMM with this run's prior, not DnCNN.

    Defaults: ρ = 0.2 and 10 iterations as scico's PnP-ADMM DnCNN deconvolution example of 2022
    (`deconv_ppp_dncnn_admm.py`: ρ = 0.2, 10 iterations, DnCNN `17M`, conjugate gradients), the implementation
    the DPS paper's baseline appears to have used; σ_d = 0.2 on the [-1, 1] scale is that DnCNN's training noise
    level (0.1 on [0, 1]). NFE = iterations (one prior call each). Linear operators only; the data term is least
    squares whatever the noise model. scico starts from Aᵀy; this starts from the operator's A⁺y (`init`), which is
    Aᵀy for inpainting and denoising and a better-scaled start for super-resolution.

    Args:
        iterations: ADMM iterations, one prior evaluation each (the NFE)
        rho: ρ, the ADMM penalty on x − z: small ρ trusts the data, large ρ the denoiser. scico's example: 0.2
        sigma: σ_d, the denoiser's noise level on the [-1, 1] scale (the prior runs at the timestep whose
            √(1 − ᾱ_t)/√ᾱ_t is nearest, in log σ). DnCNN 17M's: 0.2
        cg_steps: conjugate-gradient steps of the x-update per ADMM iteration: exact after 2 for inpainting and
            denoising; 10 leave a relative residual ≤ 4e-5 on the paper's blurs and 1e-7 on its super-resolution
            from a cold start
    """

    name = "pnp_admm"
    divergence_hint = "PnP-ADMM is stopped at its last finite iterate; a larger sampler.sigma or fewer iterations"

    def __init__(
        self,
        iterations: Annotated[int, Range(1, None)] = 10,
        rho: Annotated[float, Range(0, None, lo_open=True), PER_SAMPLE] = 0.2,
        sigma: Annotated[float, Range(0, None, lo_open=True), PER_SAMPLE] = 0.2,
        cg_steps: Annotated[int, Range(1, None)] = 10,
    ):
        super().__init__(iterations, rho, cg_steps)
        self.sigma = sigma

    def check(self, prior: Denoiser, physics: Physics) -> None:
        super().check(prior, physics)
        levels = noise_levels(prior.alphas_cumprod.double().cpu())
        lo, hi = levels[0].item(), levels[-1].item()
        sigmas = torch.as_tensor(self.sigma, dtype=torch.float64).flatten()
        if bool(((sigmas < lo) | (sigmas > hi)).any()):
            raise ConfigError(
                f"sampler.sigma={self.sigma} is outside the noise levels the prior was trained on: "
                f"√(1 − ᾱ_t)/√ᾱ_t runs from {lo:.3g} (t = 0) to {hi:.3g} (t = T − 1)"
            )

    def length(self, schedule: Schedule) -> int:
        """One network evaluation an iteration."""
        return self.iterations

    def prior_step(self, like: Tensor, prior: Denoiser, schedule: Schedule) -> PriorStep:
        return GaussianDenoiser(prior, self.sigma, like)
