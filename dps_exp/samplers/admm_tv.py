"""ADMM-TV, the DPS paper's total-variation baseline: min_x ½‖y − A x‖² + λ TV(x), no learned prior."""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from dps_exp.batch import per_sample
from dps_exp.config import PER_SAMPLE, Range
from dps_exp.denoisers.base import Denoiser
from dps_exp.samplers.admm import ADMM, PriorStep
from dps_exp.schedule import Schedule

TAU = 1 / 8
"""The dual gradient step: 1 / ‖div‖², ‖div‖² ≤ 8 (Chambolle 2004; Beck & Teboulle 2009)."""


def grad(x: Tensor) -> tuple[Tensor, Tensor]:
    """Forward differences (∂_h x, ∂_v x) of (B, C, H, W) images, zero across the last column / row (Neumann)."""
    return F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1)), F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))


def div(ph: Tensor, pv: Tensor) -> Tensor:
    """div = −gradᵀ for fields whose last column (ph) / row (pv) is zero, as `grad` leaves them."""
    return ph - F.pad(ph[..., :, :-1], (1, 0)) + pv - F.pad(pv[..., :-1, :], (0, 0, 1, 0))


def tv(x: Tensor) -> Tensor:
    """TV(x) = Σ_{c,i,j} |∇x_{c,i,j}|₂ per sample (B,): isotropic within each colour channel."""
    gh, gv = grad(x)
    return (gh.square() + gv.square()).sqrt().flatten(1).sum(1)


class TVProx:
    """prox_{γ TV}(v) = argmin_z ½‖z − v‖² + γ TV(z) = v − γ div p*, p* the solution of Chambolle's (2004) dual

        min_p ‖div p − v/γ‖²  subject to |p_{c,i,j}|₂ ≤ 1,

    by Beck & Teboulle's (2009) fast gradient projection (FGP: Chambolle's projected gradient with Nesterov
    momentum, O(1/k²) where Chambolle's own iteration is O(1/k)); from q = p, t = 1:

        p' = Π_{|·|≤1}(q + τ ∇(div q − v/γ)),   t' = (1 + √(1 + 4t²))/2,   q = p' + (t − 1)/t' (p' − p)

    `steps` iterations a call; the dual p is kept between calls and the momentum restarted (a warm start: ADMM's
    successive inputs are close, so a few iterations a call track the exact prox). γ (number or (B, 1, 1, 1))
    per sample.
    """

    def __init__(self, gamma: float | Tensor, steps: int):
        self.gamma, self.steps = gamma, steps
        self.p: tuple[Tensor, Tensor] | None = None

    def __call__(self, v: Tensor) -> Tensor:
        p = self.p if self.p is not None else (torch.zeros_like(v), torch.zeros_like(v))
        q, t = p, 1.0
        for _ in range(self.steps):
            wh, wv = grad(div(*q) - v / self.gamma)
            ph, pv = q[0] + TAU * wh, q[1] + TAU * wv
            norm = (ph.square() + pv.square()).sqrt().clamp_min(1.0)
            p_next = (ph / norm, pv / norm)
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            q = tuple(a + (t - 1) / t_next * (a - b) for a, b in zip(p_next, p, strict=True))
            p, t = p_next, t_next
        self.p = p
        return v - self.gamma * div(*p)


class ADMMTV(ADMM):
    """ADMM-TV: min_x ½‖y − A x‖² + λ TV(x), TV(x) = Σ_{c,i,j} √((∂_h x)² + (∂_v x)²) isotropic within each colour
    channel, forward differences with Neumann boundary (deepinv's `TVPrior`; scico's example, which the DPS paper's
    ADMM-TV appears to have run, takes `FiniteDifference(append=0)`, whose TV also charges the last row and column's
    values). NFE 0: no network. Linear operators only; the data term is least squares whatever the
    noise model (the Gaussian one's likelihood).

    The ADMM of dps_exp/samplers/admm.py with the prior step z = prox_{(λ/ρ) TV}(x + u), computed by `tv_steps`
    iterations of FGP on Chambolle's dual (`TVProx`) warm-started from the previous call's dual: inexact at each
    iterate, exact in the limit (tests/test_sampler_admm_tv.py: 80 iterations end 2e-6 from the exact minimiser).

    Defaults: λ = 0.027, ρ = 0.14 and 50 iterations, as scico's ADMM-TV deconvolution example of 2022
    (`deconv_tv_admm.py`: isotropic TV, conjugate gradients), the implementation the DPS paper's baseline appears to
    have used; its λ is taken as it stands on our [-1, 1] scale (whether the paper's images were on [0, 1] there,
    which would make it 0.054 here, is not known). The best λ depends on the task: on the bundled face at 256 px,
    σ = 0.05, 50 iterations, the best of 0.005–0.04 was 0.005 for ×4 super-resolution and Gaussian deblurring,
    0.02 for 92% random inpainting and 0.04 (or more) for box inpainting.

    Args:
        iterations: ADMM iterations
        rho: ρ, the ADMM penalty on x − z. scico's example: 0.14
        tv_weight: λ, the weight of TV(x) against ½‖y − A x‖², on the [-1, 1] scale. scico's example: 0.027
        tv_steps: FGP iterations (Chambolle's dual, accelerated) of the TV prox per ADMM iteration, warm-started
        cg_steps: conjugate-gradient steps of the x-update per ADMM iteration: exact after 2 for inpainting and
            denoising; 10 leave a relative residual ≤ 4e-5 on the paper's blurs and 1e-7 on its super-resolution
            from a cold start
    """

    name = "admm_tv"

    def __init__(
        self,
        iterations: Annotated[int, Range(1, None)] = 50,
        rho: Annotated[float, Range(0, None, lo_open=True), PER_SAMPLE] = 0.14,
        tv_weight: Annotated[float, Range(0, None, lo_open=True), PER_SAMPLE] = 0.027,
        tv_steps: Annotated[int, Range(1, None)] = 10,
        cg_steps: Annotated[int, Range(1, None)] = 10,
    ):
        super().__init__(iterations, rho, cg_steps)
        self.tv_weight, self.tv_steps = tv_weight, tv_steps

    def prior_step(self, like: Tensor, prior: Denoiser, schedule: Schedule) -> PriorStep:
        gamma = per_sample(self.tv_weight, like) / per_sample(self.rho, like)
        return TVProx(gamma, self.tv_steps)
