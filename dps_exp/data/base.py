"""What every data source provides: an ordered list of items, each loaded as one image."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Annotated, Literal

from torch import Tensor

from dps_exp.config import Range

BatchSize = Literal["auto"] | Annotated[int, Range(1, None)]
"""`data.batch_size`: a number of samples, or `auto`: the largest that fits the device's memory on CUDA (probed
once per process), a fixed choice by image size on CPUs (dps_exp/run/speed.py, docs/performance.md)."""


@dataclass(frozen=True)
class Item:
    index: int
    """Position in the (unsharded) list; seeds derive from it, so it never changes with batching."""
    source: str
    """Where the image comes from (its file, or a description of how it was drawn)."""


class DataSource(ABC):
    """An ordered list of images, each (channels, size, size) in [0, 1].

    `batch_size` bounds how many samples (images × sweep points × draws) go through the sampler together (`auto`:
    the run chooses; `BatchSize`);
    `shard` of `num_shards` says which part of a longer list this job holds (its items keep their indices).
    """

    size: int
    batch_size: int | str
    channels: int = 3
    shard: int = 0
    num_shards: int = 1

    @abstractmethod
    def items(self) -> list[Item]:
        """This job's items, in order."""

    @abstractmethod
    def load(self, item: Item) -> Tensor:
        """The image of `item`, (channels, size, size) float32 in [0, 1]; DataError (naming the file and the
        reason) when it cannot be read."""
