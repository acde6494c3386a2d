"""Oversampling smoothness (Rodriguez, Xu, Chen, Zou & Miao, J. Appl. Cryst. 46, 312–318, 2013): HIO with a
smoothed region outside the support."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from dps_exp.batch import per_sample
from dps_exp.config import PER_SAMPLE, Range
from dps_exp.errors import ConfigError
from dps_exp.samplers.alternating import FourierMagnitudes
from dps_exp.samplers.base import Callback
from dps_exp.samplers.dps import keep_finite
from dps_exp.samplers.hio import HIO


def gaussian_filter(shape: tuple[int, int], width: float, like: Tensor) -> Tensor:
    """W(k) = exp(−½ (k_h / (width·H'))² − ½ (k_w / (width·W'))²) over the (H', W') DFT grid in its own order, k in
    frequency pixels from zero (so W(0) = 1, its maximum)."""
    rows, cols = (torch.fft.fftfreq(n, 1 / n, device=like.device, dtype=like.dtype) / (width * n) for n in shape)
    return torch.exp(-0.5 * (rows[:, None] ** 2 + cols[None, :] ** 2))


class OSS(HIO):
    """Oversampling smoothness (Rodriguez et al. 2013): HIO with the region outside the support smoothed by a
    Gaussian low-pass filter whose width shrinks over stages, each starting from the previous stage's best; phase
    retrieval only, no network (NFE 0).

    The filter is W(k) = exp(−½ (k/α)²) in Fourier space (k in frequency pixels from zero):

        x_{k+1} = HIO's update of x_k (dps_exp/samplers/hio.py)                    on the support
        x_{k+1} = F⁻¹[ W_α · F(x_k − β x'_k) ]                                       off the support

    (as the authors' MATLAB code: the HIO feedback x_k − β x'_k is filtered over the whole grid, and only its
    part off the support is kept). The run is split into `stages` equal stages with α from 2 N down to 0.2 N
    in equal steps (N the padded grid's side, per axis; the authors' code: 10 stages of 200 iterations); each
    stage's lowest Fourier error R_F (of out_k = P_C x'_k) is remembered, the next stage starts from the input
    that followed it, and the estimate is the best out_k of all stages. Wide filters at first leave HIO almost
    unchanged; narrow ones at the end smooth the outside towards ER's zero, damping the oscillations that noise
    drives there. β = 0.9 and 2000 iterations: the authors' code and runs (UCLA's OSS page: 2000 iterations a run,
    the best of typically 100 runs; here `restarts`).

    Args:
        stages: stages of equal length, α from 2 N down to 0.2 N (10: the authors' code); each starts from the best
            input of the one before
    """

    name = "oss"

    def __init__(
        self,
        iterations: Annotated[int, Range(1, None)] = 2000,
        beta: Annotated[float, Range(0, None, lo_open=True), PER_SAMPLE] = 0.9,
        stages: Annotated[int, Range(1, None)] = 10,
        restarts: Annotated[int, Range(1, None)] = 1,
        align_channels: bool = False,
    ):
        super().__init__(iterations, beta, restarts, align_channels)
        if stages > iterations:
            raise ConfigError(f"sampler.stages={stages} is more than sampler.iterations={iterations}: every stage "
                              "needs an iteration")  # fmt: skip
        self.stages = stages

    def widths(self) -> list[float]:
        """α / N of each stage: 2.0 down to 0.2 in equal steps."""
        return [2.0 - 1.8 * s / max(self.stages - 1, 1) for s in range(self.stages)]

    def solve(self, problem: FourierMagnitudes, x: Tensor, step: Callback) -> tuple[Tensor, Tensor, Tensor]:
        beta = per_sample(self.beta, x)
        inf = torch.full((x.shape[0],), torch.inf, device=x.device, dtype=x.dtype)
        best_out, best_err = x, inf
        diverged_at = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        for s, width in enumerate(self.widths()):
            W = gaussian_filter(x.shape[-2:], width, x)
            stage_err, stage_in, stage_out = inf, x, x
            for k in range(s * self.iterations // self.stages, (s + 1) * self.iterations // self.stages):
                x_p = problem.project(x)
                out = problem.constrain(x_p)
                smooth = torch.fft.ifft2(torch.fft.fft2(x - beta * x_p) * W).real
                x_next = torch.where(problem.support, self.update(problem, x, x_p, out), smooth)
                x, diverged_at = keep_finite(x, x_next, diverged_at, k)
                err = problem.error(out)
                better = err < stage_err
                stage_err = torch.where(better, err, stage_err)
                stage_in = torch.where(better.view(-1, 1, 1, 1), x, stage_in)
                stage_out = torch.where(better.view(-1, 1, 1, 1), out, stage_out)
                step(k, out, out)
            x = stage_in  # the next stage starts from this stage's best
            better = stage_err < best_err
            best_err = torch.where(better, stage_err, best_err)
            best_out = torch.where(better.view(-1, 1, 1, 1), stage_out, best_out)
        return best_out, best_err, diverged_at
