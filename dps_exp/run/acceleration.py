"""Applying the speed rules (`speed.py`) to a run's prior: precision first (the memory probe runs at it), then
the batch size, compilation and layout; the persistent compile cache; the out-of-memory back-off.

Side effects live here, not in the rules: the prior's `accelerate`, `torch.backends.cudnn.benchmark`, the
inductor cache directory, the process-wide memory of the probed batch size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from dps_exp.denoisers.base import Denoiser, NetworkDenoiser
from dps_exp.errors import UserError
from dps_exp.run import speed
from dps_exp.run.speed import AUTO, DeviceInfo, Speed, Workload

log = logging.getLogger(__name__)

_BATCHES: dict[tuple, tuple[int, str]] = {}
"""The `auto` batch found per (prior config, image shape, precision, device) in this process: probed once, halved
for good after an out-of-memory error, so the next job of a sequential sweep starts where this one ended."""


def compile_cache_dir() -> Path:
    """Where compiled kernels persist between processes: `$TORCHINDUCTOR_CACHE_DIR` when set, else
    `$DPS_CACHE/compile`, else `~/.cache/dps_exp/compile` (`$XDG_CACHE_HOME` for `~/.cache`)."""
    if inductor := os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(inductor)
    if root := os.environ.get("DPS_CACHE"):
        return Path(root).expanduser() / "compile"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "dps_exp" / "compile"


def use_compile_cache() -> Path:
    """Point PyTorch's persistent compile caches (inductor's FX graph cache, AOTAutograd's cache, Triton's kernels,
    all keyed by the graph, its input shapes, dtypes and layouts, the device and the PyTorch version) at
    `compile_cache_dir()`, so a sweep's later jobs reuse the first one's kernels instead of the default, a folder
    in /tmp that does not outlive the machine's reboot. Must run before the first compilation of the process."""
    path = compile_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    return path


def _key(workload: Workload, precision: str, device: torch.device) -> tuple:
    return workload.prior, workload.shape, precision, str(device)


def network_parameters(prior: Denoiser) -> int:
    """The prior network's parameter count; 0 for a closed-form prior."""
    return sum(p.numel() for p in prior.net.parameters()) if isinstance(prior, NetworkDenoiser) else 0


def cuda_footprint(prior: Denoiser, shape: Sequence[int], device: torch.device) -> Callable[[int], int]:
    """`peak(b)`: the peak CUDA memory (bytes above what was allocated before) of one DPS network step, forward
    and input-gradient backward, at batch b; eager (a compiled step needs less: an upper bound)."""

    def peak(batch: int) -> int:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        x = torch.randn(batch, *shape, device=device, requires_grad=True)
        t = torch.full((batch,), 500, device=device, dtype=torch.long)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(prior(x, t).x0.clamp(-1, 1).square().sum(), x)
        torch.cuda.synchronize(device)
        used = torch.cuda.max_memory_allocated(device) - before
        del x, t, g
        torch.cuda.empty_cache()
        return used

    return peak


def resolve_speed(
    precision: str,
    compile: bool | str,
    channels_last: bool | str,
    batch_size: int | str,
    prior: Denoiser,
    device: torch.device,
    workload: Workload,
) -> Speed:
    """Resolve every `auto`, apply the choices to `prior` (and cudnn), and return them with their reasons."""
    info = DeviceInfo.of(device)
    bound = workload.samples if batch_size == AUTO else min(int(batch_size), workload.samples)
    reasons = {}
    precision, reasons["precision"] = speed.choose_precision(precision, info, workload, bound)
    prior.accelerate(precision)  # the probe measures the network at the precision it will run at
    key = _key(workload, precision, device)
    if batch_size == AUTO and key in _BATCHES:
        batch, reasons["data.batch_size"] = _BATCHES[key]
    else:
        footprint = (
            cuda_footprint(prior, workload.shape, device) if info.type == "cuda" and workload.parameters else None
        )
        batch, reasons["data.batch_size"] = speed.choose_batch(batch_size, info, workload.shape, footprint)
        if batch_size == AUTO:
            _BATCHES[key] = (batch, reasons["data.batch_size"])
    compiled, reasons["compile"] = speed.choose_compile(
        compile, info, workload, precision, min(batch, workload.samples)
    )
    layout, reasons["channels_last"] = speed.choose_layout(channels_last, info, workload, bool(compiled))
    cudnn, reasons["cudnn.benchmark"] = speed.choose_cudnn(info)
    if compiled and workload.parameters:
        reasons["compile"] += f"; kernels cached in {use_compile_cache()}"
    if info.type == "cuda":
        torch.backends.cudnn.benchmark = cudnn
    prior.accelerate(precision, compiled, layout)
    return Speed(precision, compiled, layout, cudnn, batch, reasons)


class BatchOutOfMemory(Exception):
    """A batch ran out of device memory before any of its results was recorded (so it may be run again)."""

    def __init__(self, size: int, message: str):
        super().__init__(f"out of memory at batch {size}: {message}")
        self.size, self.message = size, message


class OutOfMemory(UserError):
    """Out of memory at batch 1: nothing left to give up."""


def halve_batch(chosen: Speed, workload: Workload, device: torch.device, oom: BatchOutOfMemory) -> None:
    """After a batch ran out of memory: halve the batch size (for the rest of this process too, when it was
    `auto`) and log one line; at batch 1 raise OutOfMemory, which says what to change."""
    first = (oom.message.strip().splitlines() or ["torch.OutOfMemoryError"])[0][:160]
    chosen.backoffs.append(oom.size)
    if oom.size <= 1:
        raise OutOfMemory(
            f"out of memory on {device} at batch 1 ({first}): use smaller images, precision=bf16 or "
            "denoiser.checkpointing=true (activation checkpointing), or a device with more memory"
        )
    chosen.batch_size = oom.size // 2
    key = _key(workload, chosen.precision, device)
    if key in _BATCHES:
        _BATCHES[key] = (chosen.batch_size, f"halved after running out of memory at {oom.size}")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log.warning("out of memory at batch %d (%s): continuing at batch %d; results do not depend on the batch",
                oom.size, first, chosen.batch_size)  # fmt: skip
