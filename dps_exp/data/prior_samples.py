"""Exact-posterior test beds: ground-truth images drawn from the prior itself (`data=prior_samples`).

With x0 drawn from the prior, x0 is also a draw from the exact posterior given its own measurement, which is
what makes coverage (dps_exp.metrics.posterior) meaningful, and the prior is the model DPS is given, so any gap
to the exact posterior is the sampler's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from dps_exp import batch
from dps_exp.config import Range, build, target_of
from dps_exp.data.base import BatchSize, DataSource, Item
from dps_exp.denoisers.exact import ExactPrior, prior_mixture
from dps_exp.errors import DataError
from dps_exp.schedule import LinearSchedule


class PriorSamples(DataSource):
    """`count` images drawn from the prior configured as `prior` (the denoiser's node, `${denoiser}`; built
    here without weights: only priors with an exact posterior, `gmm` and `gaussian`, are allowed). Image i
    is drawn from its own stream, seeded by (`seed`, i), so it does not depend on `count` or `limit`.

    Images are (C, size, size), returned on the [0, 1] scale as the run expects but NOT clipped: the
    ground truth stays an exact prior draw (a few values of a Gaussian draw fall outside [-1, 1]).

    Args:
        prior: the prior's config node
        count: how many images
        seed: image i is drawn from a stream seeded by (seed, i): it does not depend on count or limit
        size: H = W (the GMM's `image_size`, else 8)
        batch_size: samples (images × sweep points × draws) per sampler call; `auto`: on CUDA the most that fit the
            free memory (probed once per process; halved after running out of memory), on CPUs up to 16
        limit: keep the first N images
    """

    def __init__(
        self,
        prior: Mapping[str, Any],
        count: Annotated[int, Range(1, None)] = 16,
        seed: Annotated[int, Range(0, None)] = 0,
        size: Annotated[int, Range(1, 64)] = 8,
        batch_size: BatchSize = "auto",
        limit: Annotated[int, Range(1, None)] | None = None,
    ):
        node = OmegaConf.to_container(prior, resolve=True) if isinstance(prior, DictConfig) else dict(prior)
        if not issubclass(target_of(node), ExactPrior):
            raise DataError(
                f"data=prior_samples needs a prior with an exact posterior (denoiser=gmm or "
                f"gaussian), not {node['_target_']}"
            )
        self.prior = build(node, schedule=LinearSchedule())  # its samples are clean images: no schedule is used
        channels = self.prior.channels
        shape = (channels, size, size)
        if self.prior.shape not in (None, shape):
            raise DataError(f"data.size={size} does not fit the prior's images {self.prior.shape}")
        self.mixture = prior_mixture(self.prior, shape)
        self.count = min(count, limit) if limit else count
        self.seed, self.size, self.batch_size, self.channels = seed, size, batch_size, channels

    def items(self) -> list[Item]:
        return [Item(i, f"prior sample {i} (seed {self.seed})") for i in range(self.count)]

    def load(self, item: Item) -> Tensor:
        gen = torch.Generator().manual_seed(batch.stream_seed(self.seed, item.index, "prior sample"))
        x0 = self.mixture.sample(1, gen)[0, 0]  # (C, H, W) on [-1, 1]
        return ((x0 + 1.0) / 2.0).float()
