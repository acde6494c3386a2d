"""Reverse-diffusion updates x_t → x_t' given the prior's prediction: the part of a step before guidance.

Each update precomputes its per-step (and per-sample) coefficients once, in float64, before the loop: `tables`
holds one (S, B, 1, 1, 1) float32 table per coefficient (row i: step i's coefficient for each sample), and
`apply` combines one step's coefficients (each broadcasting over the batch) with x_t, the prediction and ε.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dps_exp.denoisers.base import Prediction
from dps_exp.schedule import Schedule


def next_timesteps(ts: Tensor) -> Tensor:
    """The timestep each step lands on: the following entry of `ts`, and −1 (a clean image) after the last."""
    return torch.cat([ts[1:], ts.new_full((1,), -1)])


def _table(v: Tensor, batch: int) -> Tensor:
    """(S,) or (S, B) float64 → (S, B, 1, 1, 1) float32: row i holds step i's coefficient for each sample."""
    v = v.float()
    if v.ndim == 1:
        v = v[:, None].expand(-1, batch)
    return v[..., None, None, None].contiguous()


class DDIMUpdate:
    """The tutorial's DDIM(η) update, with ᾱ = ᾱ_t and ᾱ' = ᾱ_{t'}:

        σ̃    = η · √((1 − ᾱ/ᾱ') (1 − ᾱ') / (1 − ᾱ))
        c    = √(1 − ᾱ' − σ̃²)
        x_t' = (√ᾱ' − c √ᾱ / √(1 − ᾱ)) · x̂0  +  c / √(1 − ᾱ) · x_t  +  σ̃ ε

    η may be a number or a (B,) tensor.
    """

    def __init__(self, schedule: Schedule, ts: Tensor, eta: float | Tensor, batch: int):
        ab, ab_next = schedule.alpha_bar(ts)[:, None], schedule.alpha_bar(next_timesteps(ts))[:, None]
        eta = torch.as_tensor(eta, dtype=torch.float64, device=ts.device).expand(batch)[None, :]
        sigma = eta * ((1 - ab / ab_next) * (1 - ab_next) / (1 - ab)).sqrt()
        c = (1 - ab_next - sigma**2).clamp_min(0).sqrt()
        self.tables = {
            "c_x0": _table(ab_next.sqrt() - c * (ab / (1 - ab)).sqrt(), batch),
            "c_xt": _table(c / (1 - ab).sqrt(), batch),
            "sigma": _table(sigma, batch),
        }

    @staticmethod
    def apply(c: dict[str, Tensor], x_t: Tensor, pred: Prediction, eps: Tensor) -> Tensor:
        return c["c_x0"] * pred.x0 + c["c_xt"] * x_t + c["sigma"] * eps

    def __call__(self, i: int, x_t: Tensor, pred: Prediction, eps: Tensor) -> Tensor:
        return self.apply({k: v[i] for k, v in self.tables.items()}, x_t, pred, eps)


class LearnedVarianceUpdate:
    """guided-diffusion's ancestral step `p_sample` with the network's learned-range variance:

        x_t' = μ̃(x̂0, x_t) + exp(½ log σ²) ε,   log σ² = f log β_t + (1 − f) log β̃_t,   f = (v + 1) / 2
        μ̃    = β_t √ᾱ' / (1 − ᾱ) · x̂0  +  (1 − ᾱ') √(ᾱ/ᾱ') / (1 − ᾱ) · x_t

    with β_t = 1 − ᾱ/ᾱ' (respaced when steps are skipped, as guided-diffusion's SpacedDiffusion does),
    β̃_t = β_t (1 − ᾱ') / (1 − ᾱ), log β̃ clipped at the last step (where β̃ = 0) to its value one step
    earlier, and no noise on the last step (guided-diffusion's `nonzero_mask`).
    """

    def __init__(self, schedule: Schedule, ts: Tensor, batch: int):
        ab, ab_next = schedule.alpha_bar(ts), schedule.alpha_bar(next_timesteps(ts))
        beta = 1 - ab / ab_next
        beta_tilde = beta * (1 - ab_next) / (1 - ab)
        if len(ts) > 1:
            beta_tilde[-1] = beta_tilde[-2]
        else:
            beta_tilde[-1] = beta[-1]
        noise_on = torch.ones_like(ab)
        noise_on[-1] = 0.0
        self.tables = {
            "c_x0": _table(beta * ab_next.sqrt() / (1 - ab), batch),
            "c_xt": _table((1 - ab_next) * (ab / ab_next).sqrt() / (1 - ab), batch),
            "log_beta": _table(beta.log(), batch),
            "log_beta_tilde": _table(beta_tilde.log(), batch),
            "noise_on": _table(noise_on, batch),
        }

    @staticmethod
    def apply(c: dict[str, Tensor], x_t: Tensor, pred: Prediction, eps: Tensor) -> Tensor:
        if pred.var is None:
            raise ValueError("sampler.variance=learned needs a prior with learned variance (e.g. denoiser=ffhq)")
        frac = (pred.var + 1) / 2
        log_var = frac * c["log_beta"] + (1 - frac) * c["log_beta_tilde"]
        mean = c["c_x0"] * pred.x0 + c["c_xt"] * x_t
        return mean + c["noise_on"] * torch.exp(0.5 * log_var) * eps

    def __call__(self, i: int, x_t: Tensor, pred: Prediction, eps: Tensor) -> Tensor:
        return self.apply({k: v[i] for k, v in self.tables.items()}, x_t, pred, eps)
