"""No prior: for the samplers that never call one (admm_tv, er, hio, oss), so that their runs load no weights."""

from __future__ import annotations

from torch import Tensor

from dps_exp.denoisers.base import Denoiser, Prediction
from dps_exp.errors import ConfigError


class NoPrior(Denoiser):
    """A prior with no network and no weights: `denoiser=none`, for samplers that use no prior (ADMM-TV and the
    phase-retrieval baselines ER, HIO and OSS). The paper's protocol selects it for them
    (conf/protocol/paper/<sampler>.yaml), so their runs neither download nor load the FFHQ or ImageNet network.

    A sampler that does call its prior stops at the first call with one line saying to choose one.
    """

    def forward(self, x_t: Tensor, t: Tensor) -> Prediction:
        raise ConfigError(
            "denoiser=none has no network, and this sampler calls its prior: choose one (denoiser=ffhq, imagenet, "
            "natural32, gaussian, ...); denoiser=none is for sampler=admm_tv, er, hio and oss"
        )
