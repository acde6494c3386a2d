"""Choosing the device: CUDA when asked or available, and one GPU per job when a sweep runs several jobs at
once on a machine with several GPUs (e.g. `hydra/launcher=joblib`)."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path
from typing import IO

import torch

from dps_exp.errors import ConfigError


def claim_gpu(lock_dir: Path, poll_s: float = 1.0) -> tuple[int, IO]:
    """Take an exclusive lock on one of the visible GPUs (blocking until one is free); returns its index and
    the open lock file, which holds the claim until it is closed or the process ends."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for k in range(torch.cuda.device_count()):
            handle = open(lock_dir / f".gpu-{k}.lock", "w")  # noqa: SIM115 - held open as the claim
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return k, handle
            except BlockingIOError:
                handle.close()
        time.sleep(poll_s)


def resolve_device(name: str, sweep_dir: Path | None = None) -> tuple[torch.device, IO | None]:
    """`auto`: CUDA when available, else the CPU. Inside a sweep on a machine with several GPUs, each job
    claims a GPU of its own (a lock file in the sweep directory), so parallel jobs never share one."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu"), None
    if not torch.cuda.is_available():
        raise ConfigError("device=cuda is not allowed here: no CUDA device is available (use device=auto or cpu)")
    if sweep_dir is not None and torch.cuda.device_count() > 1:
        index, claim = claim_gpu(Path(sweep_dir))
        return torch.device("cuda", index), claim
    return torch.device("cuda"), None


def layout_advice(device: torch.device, channels_last: bool, compile: bool) -> str | None:
    """A warning for channels_last in eager mode on CUDA, where it slows the ADM UNet down.

    PyTorch's CUDA GroupNorm has no channels_last kernel (2.11 on the GPU machine, 2.14 here): it returns a
    contiguous tensor, so each norm layer converts the layout and the next convolution converts it back. On an
    H200, eager channels_last ran a batch-8 step at 0.78× the tutorial's loop (docs/performance.md).
    torch.compile plans layouts itself, and CPUs have a channels_last GroupNorm, so both are left alone.
    """
    if device.type == "cuda" and channels_last and not compile:
        return (
            "channels_last=true without compile=true is slower on CUDA (GroupNorm there has no channels_last "
            "kernel, so every norm layer converts the layout twice): use compile=true, or channels_last=false"
        )
    return None
