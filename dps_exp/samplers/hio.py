"""Hybrid input-output (Fienup, Appl. Opt. 21, 1982): phase retrieval with feedback outside the constraints."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from dps_exp.batch import per_sample
from dps_exp.config import PER_SAMPLE, Range
from dps_exp.samplers.alternating import AlternatingProjections, FourierMagnitudes, iterate
from dps_exp.samplers.base import Callback


class HIO(AlternatingProjections):
    """Hybrid input-output (Fienup 1982): error reduction with feedback β where the Fourier-consistent image violates
    the object constraints; phase retrieval only, no network (NFE 0).

    Where x'_k = P_M x_k meets the object constraints it is the next input; elsewhere the input is pushed against
    the violation:

        x_{k+1} = x'_k                            where x'_k is on the support and within [-1, 1]
        x_{k+1} = x_k + β (P_C x'_k − x'_k)       elsewhere: x_k − β x'_k off the support (Fienup's rule;
                                                  P_C x'_k = 0 there), x_k − β (x'_k ∓ 1) where |x'_k| > 1

    (dps_exp/samplers/alternating.py has P_M, P_C and the start). Off the support this is Fienup's x_k − β x'_k
    exactly; on it, the range [-1, 1] takes the place of his positivity, with the same feedback on the part of
    x'_k that violates it. The estimate is P_C x'_{K−1}. β = 0.9: the OSS authors' code's value for "a typical HIO
    reconstruction" (the usual range is 0.5–1); 2000 iterations, as their runs (the DPS paper gives neither).

    Args:
        beta: β, the feedback on the part of x' that violates the object constraints
    """

    name = "hio"

    def __init__(
        self,
        iterations: Annotated[int, Range(1, None)] = 2000,
        beta: Annotated[float, Range(0, None, lo_open=True), PER_SAMPLE] = 0.9,
        restarts: Annotated[int, Range(1, None)] = 1,
        align_channels: bool = False,
    ):
        super().__init__(iterations, restarts, align_channels)
        self.beta = beta

    def update(self, problem: FourierMagnitudes, x: Tensor, x_p: Tensor, out: Tensor) -> Tensor:
        """x_{k+1} from x_k, x'_k and out_k = P_C x'_k, all (B, C, H', W')."""
        return torch.where(problem.satisfied(x_p), x_p, x + per_sample(self.beta, x) * (out - x_p))

    def solve(self, problem: FourierMagnitudes, x: Tensor, step: Callback) -> tuple[Tensor, Tensor, Tensor]:
        return iterate(problem, x, self.iterations, lambda x, x_p, out: self.update(problem, x, x_p, out), step)
