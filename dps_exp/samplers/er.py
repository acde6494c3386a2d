"""Error reduction (Gerchberg–Saxton; Fienup, Appl. Opt. 21, 1982): alternating projections for phase retrieval."""

from __future__ import annotations

from torch import Tensor

from dps_exp.samplers.alternating import AlternatingProjections, FourierMagnitudes, iterate
from dps_exp.samplers.base import Callback


class ER(AlternatingProjections):
    """Error reduction (Gerchberg–Saxton; Fienup 1982): alternating projections onto the measured Fourier magnitudes
    and onto the object constraints (the support and the range [-1, 1]) from a random start; phase retrieval only,
    no network (NFE 0).

    With P_M and P_C of dps_exp/samplers/alternating.py:

        x'_k    = P_M x_k           keep the phase of F x_k, set its magnitude to the measured |y|₊
        x_{k+1} = P_C x'_k          the support (the unpadded image region) and the range [-1, 1]

    ER only descends its error (Fienup 1982), so it stalls in the local minimum nearest its start: the paper's
    weakest phase-retrieval baseline (Table 3). 2000 iterations by default, as the OSS authors' runs (the DPS
    paper does not give the baselines' counts).
    """

    name = "er"

    def solve(self, problem: FourierMagnitudes, x: Tensor, step: Callback) -> tuple[Tensor, Tensor, Tensor]:
        return iterate(problem, x, self.iterations, lambda x, x_p, out: out, step)
