"""Per-sample values and per-sample randomness for a batch.

Every sample carries its own hyperparameters (a Python number, or a (B,) tensor when they differ) and its own
random streams, so a sample's result is the same alone or in any batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor


def per_sample(value: float | Tensor, like: Tensor) -> float | Tensor:
    """`value` in a form that broadcasts over `like` (B, ...) per sample: a (B,) tensor as (B, 1, …, 1) in
    `like`'s dtype and device; a number as it is (a scalar operand needs no upload to the device)."""
    if not isinstance(value, Tensor):
        return value
    v = value.to(dtype=like.dtype, device=like.device)
    return v.reshape(-1, *([1] * (like.ndim - 1))) if v.ndim else v


def stream_seed(seed: int, index: int, stream: str) -> int:
    """A 63-bit seed for one random stream of one image, stable across Python versions and machines."""
    digest = hashlib.blake2b(f"{seed}/{index}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generators(
    seeds: Sequence[int], indices: Sequence[int], stream: str | Sequence[str], device: torch.device | str = "cpu"
) -> list[torch.Generator]:
    """One torch.Generator per sample, seeded from (run seed, image index, stream); `stream` may differ per
    sample (several posterior draws of one image)."""
    streams = [stream] * len(seeds) if isinstance(stream, str) else list(stream)
    return [
        torch.Generator(device=device).manual_seed(stream_seed(s, i, name))
        for s, i, name in zip(seeds, indices, streams, strict=True)
    ]


def randn(shape: Sequence[int], gens: Sequence[torch.Generator], device=None, dtype=torch.float32) -> Tensor:
    """Standard normal noise of shape (B, *shape[1:]), sample b drawn from gens[b] alone."""
    device = device or gens[0].device
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device, dtype=dtype) for g in gens])


def rand(shape: Sequence[int], gens: Sequence[torch.Generator], device=None, dtype=torch.float32) -> Tensor:
    """Uniform [0, 1) noise of shape (B, *shape[1:]), sample b drawn from gens[b] alone."""
    device = device or gens[0].device
    return torch.stack([torch.rand(tuple(shape[1:]), generator=g, device=device, dtype=dtype) for g in gens])
