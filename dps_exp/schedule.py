"""The diffusion noise schedule: β_t, ᾱ_t = Π_{s≤t} (1 − β_s), and the timesteps a sampler walks."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from dps_exp.config import Range


class Schedule:
    """A discrete-time variance-preserving schedule over T training steps, t = 0 … T−1.

    Kept in float64 so that coefficients derived from it (ratios of ᾱ near 1) stay exact; samplers cast what
    they use to the working dtype once, before their loop.
    """

    def __init__(self, betas: Tensor):
        if betas.ndim != 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must be a 1-D tensor with values in (0, 1)")
        self.betas = betas.to(torch.float64)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    @property
    def num_train_steps(self) -> int:
        return self.betas.numel()

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device: torch.device | str) -> Schedule:
        return Schedule(self.betas.to(device))

    def alpha_bar(self, t: Tensor) -> Tensor:
        """ᾱ_t for integer timesteps t, with ᾱ_{−1} = 1 (the 'next' of the last step: a clean image)."""
        padded = torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod])
        return padded[t + 1]

    def timesteps(self, steps: int) -> Tensor:
        """The tutorial's sequence: stride `T // steps` from 0, walked backwards (long, on this device).

        Its length is ceil(T / stride), which exceeds `steps` when `steps` does not divide T (300 → 334).
        """
        if not 1 <= steps <= self.num_train_steps:
            raise ValueError(f"steps must be in [1, {self.num_train_steps}], got {steps}")
        stride = self.num_train_steps // steps
        return torch.arange(0, self.num_train_steps, stride, device=self.device).flip(0)

    def respaced(self, steps: int) -> Tensor:
        """guided-diffusion's `space_timesteps(T, [steps])`: exactly `steps` timesteps spread evenly from 0
        to T − 1 (rounded as it rounds, accumulating the stride), walked backwards."""
        if not 1 <= steps <= self.num_train_steps:
            raise ValueError(f"steps must be in [1, {self.num_train_steps}], got {steps}")
        stride = (self.num_train_steps - 1) / (steps - 1) if steps > 1 else 1.0
        taken, position = [], 0.0
        for _ in range(steps):
            taken.append(round(position))
            position += stride
        return torch.tensor(sorted(set(taken), reverse=True), device=self.device)


class LinearSchedule(Schedule):
    """β linear from `beta_start` to `beta_end` over `num_train_steps` steps (DDPM; the DPS paper's priors).

    Args:
        beta_start: β at t = 0
        beta_end: β at t = T − 1
        num_train_steps: T, the number of training timesteps
    """

    def __init__(
        self,
        beta_start: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 1e-4,
        beta_end: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 2e-2,
        num_train_steps: Annotated[int, Range(2, None)] = 1000,
    ):
        super().__init__(torch.linspace(beta_start, beta_end, num_train_steps, dtype=torch.float64))
