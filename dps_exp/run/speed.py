"""Fast by default: what `precision`, `compile`, `channels_last` and `data.batch_size` = `auto` resolve to.

Each rule is a pure function of the device's properties (`DeviceInfo`), the run's size (`Workload`) and
measured constants; each returns its value and the reason, which the run logs in one line and records in
summary.json (`speed`). The constants' sources are in docs/performance.md ("Fast defaults"); a constant that
is None is still to be measured on a GPU (`scripts/gpu_check.sh`), and until then its rule takes the
conservative choice. An explicit value (`precision=bf16`, `compile=true`, …) is kept as set.

The resolved values, never `auto`, are what a run's identity records (`settings.Identity`): a resumed run that
resolves differently (another GPU, another precision) is refused rather than mixed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from dps_exp.errors import ConfigError

AUTO = "auto"

# ---------------------------------------------------------------------------------------------------------
# Measured constants (docs/performance.md). The reference: one DPS step of the FFHQ UNet (93.6 M parameters)
# at 256×256, random weights, NVIDIA H200, PyTorch 2.11, `scripts/gpu_check.sh` of 2026-11-28.

REFERENCE_PARAMETERS = 93.6e6
REFERENCE_PIXELS = 256 * 256

BF16_TOLERANCE_DB = 0.05
"""bf16 is chosen only where it moves the mean |ΔPSNR| against fp32 by at most this: below one standard error of
a 1000-image mean PSNR (~2 dB spread / √1000 ≈ 0.06 dB), so a table of the paper's protocol cannot tell."""
BF16_PSNR_CHANGE_DB: Mapping[str, float | None] = {"cpu": 0.178, "cuda": None}
"""Measured mean |ΔPSNR| of bf16 against fp32 per image, per device type. CPU: the natural32 demo (4 images, 64×64,
300 steps; docs/performance.md). CUDA: to be measured (`scripts/gpu_check.sh`, section `bf16`)."""
BF16_MIN_BATCH = 8
"""On CUDA eager bf16 is slower than fp32 at batch 1 (0.054 against 0.039 s/step: launch-bound, autocast adds
cast kernels) and faster from batch 8 on (0.097 against 0.102 s/step)."""
CUDNN_BENCHMARK_SPEEDUP: float | None = None
"""Step time without `torch.backends.cudnn.benchmark` over with it, eager, batch 8: to be measured (section
`cudnn`). It is switched on when this exceeds 1.02."""
CPU_CHANNELS_LAST_SPEEDUP = {"natural32, 64×64, batch 4": 0.94, "FFHQ UNet, 64×64, batch 1": 1.16}
"""Step time contiguous over channels_last on this project's 2-core CPU (CPU time of one DPS network step, one
thread, interleaved; docs/performance.md). It helps the large UNet and slows the small one, so `auto` keeps the
contiguous layout on CPUs unless every network measured gains over 5% (channels_last rounds differently, which
the run's identity records: a default that changes results should pay everywhere)."""
CPU_PIXELS_PER_BATCH = 4 * 256 * 256
"""The CPU's `data.batch_size=auto`: batches of this many pixels per channel (4 images at 256×256, the former
default: about 8 GB for the FFHQ UNet in fp32 at ~2 GB per sample), more for smaller images …"""
CPU_MAX_BATCH = 16
"""… up to 16 samples (a CPU's throughput barely grows with batch; at 32×32 packing 16 points paid 3×)."""
MEMORY_HEADROOM = 0.85
"""CUDA's `data.batch_size=auto` fills at most this fraction of the free memory with the probe's per-sample
footprint (the rest: allocator fragmentation, cuDNN workspaces, metric networks)."""
MAX_AUTO_BATCH = 256


@dataclass(frozen=True)
class CostModel:
    """Seconds per DPS step of the reference network, and what compiling costs: `torch.compile` is chosen when
    the sampling time it saves is at least `worth` × its compilation time (per distinct batch shape: shapes are
    compiled separately, `dynamic=False`).

    A step at batch B costs max(floor, B × per_sample × work), `work` being the run's image pixels and network
    parameters relative to the reference's (a crude scale: the per-sample term is arithmetic, the floor kernel
    launches). The compiled floor is taken to equal the eager one (not measured: conservative)."""

    compile_s: float = 111.0
    """The compiled row's compilation (bf16, batch 16, H200)."""
    floor_s: float = 0.0388
    """Eager fp32 at batch 1: the launch-bound floor of a step."""
    eager_per_sample_s: Mapping[str, float | None] = field(default_factory=lambda: {"fp32": 0.0121, "bf16": 0.0081})
    """Eager, contiguous. fp32: the batch-32 row (measured channels_last, an upper bound); bf16: the 16-point sweep's
    in-loop time, 0.13 s per step of 16 (contiguous; to be measured by section `layout`)."""
    compiled_per_sample_s: Mapping[str, float | None] = field(default_factory=lambda: {"fp32": None, "bf16": 0.0048})
    """Compiled: bf16 the batch-16 row (0.0773 s/step); fp32 to be measured (section `compile`)."""
    worth: float = 2.0

    def step_s(self, batch: int, per_sample: float, work: float) -> float:
        return max(self.floor_s, batch * per_sample * work)


COST = CostModel()


@dataclass(frozen=True)
class DeviceInfo:
    """What the rules need to know of a device (tests fake it)."""

    type: str
    name: str = "cpu"
    capability: tuple[int, int] | None = None
    """CUDA compute capability; bf16 needs ≥ 8.0 (Ampere)."""
    free_bytes: int | None = None

    @classmethod
    def of(cls, device: torch.device) -> DeviceInfo:
        if device.type != "cuda":
            return cls(device.type)
        free, _ = torch.cuda.mem_get_info(device)
        return cls("cuda", torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device), free)


@dataclass(frozen=True)
class Workload:
    """The run at hand: `samples` (image × sweep point × draw, all of them, so that a resumed run resolves as its
    first session did) of `steps` network evaluations each, images (C, H, W), a network of `parameters` (0: a
    closed-form prior), described by `prior`."""

    samples: int
    steps: int
    shape: tuple[int, int, int]
    parameters: int
    prior: str = ""
    """The prior's config, hashed (activation checkpointing, another network: another memory footprint)."""

    @property
    def work(self) -> float:
        """Arithmetic per sample relative to the reference network's."""
        return self.shape[1] * self.shape[2] / REFERENCE_PIXELS * self.parameters / REFERENCE_PARAMETERS


@dataclass
class Speed:
    """The resolved speed settings and why each was chosen."""

    precision: str
    compile: bool | str
    channels_last: bool
    cudnn_benchmark: bool
    batch_size: int
    reasons: dict[str, str]
    backoffs: list[int] = field(default_factory=list)
    """The batch sizes that ran out of memory, in order."""

    def result_settings(self) -> dict[str, Any]:
        """The values a run's identity records (those that change results)."""
        return {"precision": self.precision, "compile": self.compile, "channels_last": self.channels_last}

    def line(self, device: str) -> str:
        """The one log line: each choice, then why."""
        shown = {"precision": self.precision, "compile": _show(self.compile), "channels_last": _show(self.channels_last),
                 "cudnn.benchmark": _show(self.cudnn_benchmark), "data.batch_size": self.batch_size}  # fmt: skip
        return f"speed on {device}: " + "; ".join(f"{k}={v} ({self.reasons[k]})" for k, v in shown.items())

    def record(self) -> dict[str, Any]:
        """summary.json's `speed`."""
        return {**self.result_settings(), "cudnn_benchmark": self.cudnn_benchmark, "batch_size": self.batch_size,
                "oom_backoffs": list(self.backoffs), "reasons": dict(self.reasons)}  # fmt: skip


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# ---------------------------------------------------------------------------------------------------------
# The rules


def choose_precision(requested: str, device: DeviceInfo, workload: Workload, batch_bound: int) -> tuple[str, str]:
    """fp32 or bf16. `batch_bound`: the largest batch the run can reach (its samples, or an explicit batch size)."""
    if requested != AUTO:
        return requested, "as set"
    if not workload.parameters:
        return "fp32", "auto: the prior has no network for autocast to act on"
    if device.type == "cuda" and device.capability is not None and device.capability < (8, 0):
        return "fp32", f"auto: this GPU (capability {device.capability[0]}.{device.capability[1]}) has no bf16"
    change = BF16_PSNR_CHANGE_DB.get(device.type)
    if change is None:
        return "fp32", f"auto: bf16's effect on results on {device.type} is still to be measured"
    if change > BF16_TOLERANCE_DB:
        return "fp32", f"auto: bf16 moves PSNR by {change:g} dB on {device.type}, over {BF16_TOLERANCE_DB:g} dB"
    if device.type == "cuda" and batch_bound < BF16_MIN_BATCH:
        return "fp32", f"auto: at batch {batch_bound} < {BF16_MIN_BATCH} bf16 is slower on CUDA"
    return "bf16", f"auto: bf16 moves PSNR by {change:g} dB ≤ {BF16_TOLERANCE_DB:g} dB"


def cpu_batch(shape: Sequence[int]) -> int:
    """The CPU's `auto` batch: CPU_PIXELS_PER_BATCH pixels, between 1 and CPU_MAX_BATCH samples."""
    return max(1, min(CPU_MAX_BATCH, CPU_PIXELS_PER_BATCH // (shape[-2] * shape[-1])))


def choose_batch(
    requested: int | str, device: DeviceInfo, shape: Sequence[int], footprint: Callable[[int], int] | None
) -> tuple[int, str]:
    """`data.batch_size`. On CUDA, `footprint(b)` is the peak memory (bytes) of one DPS step at batch b above
    what is already allocated; two probes (b = 1, 2) give the per-sample and fixed parts, and the batch is the
    largest whose step fills at most MEMORY_HEADROOM of the free memory."""
    if requested != AUTO:
        return int(requested), "as set"
    if device.type != "cuda" or footprint is None or device.free_bytes is None:
        why = f"auto on {device.type}: the pixels of 4 images of 256×256 per batch, at most {CPU_MAX_BATCH} samples"
        return cpu_batch(shape), why
    one, two = footprint(1), footprint(2)
    per_sample = max(two - one, 1)
    fixed = max(one - per_sample, 0)
    budget = device.free_bytes * MEMORY_HEADROOM - fixed
    batch = int(max(1, min(MAX_AUTO_BATCH, budget // per_sample)))
    return batch, (
        f"auto: {per_sample / 2**30:.2f} GiB per sample measured, {MEMORY_HEADROOM:.0%} of "
        f"{device.free_bytes / 2**30:.1f} GiB free"
    )


def chunks(samples: int, batch: int) -> list[int]:
    """The batch sizes a run of `samples` goes through at `batch`."""
    full, rest = divmod(samples, batch)
    return [batch] * full + ([rest] if rest else [])


def choose_compile(
    requested: bool | str, device: DeviceInfo, workload: Workload, precision: str, batch: int, cost: CostModel = COST
) -> tuple[bool | str, str]:
    """Whether to `torch.compile` the network: when it saves at least `cost.worth` × its compilation time."""
    if requested == "graphs" and device.type != "cuda":
        raise ConfigError(
            "compile=graphs is not allowed here: CUDA graphs need a CUDA device (use compile=true or auto)"
        )
    if requested != AUTO:
        return requested, "as set"
    if not workload.parameters:
        return False, "auto: the prior has no network to compile"
    if device.type != "cuda":
        return False, "auto: compiling does not pay on CPUs (oneDNN convolutions dominate either way)"
    compiled, eager = cost.compiled_per_sample_s.get(precision), cost.eager_per_sample_s.get(precision)
    if compiled is None or eager is None:
        return False, f"auto: the compiled {precision} step is still to be measured"
    sizes = chunks(workload.samples, batch)
    w = workload.work
    saved = workload.steps * sum(cost.step_s(b, eager, w) - cost.step_s(b, compiled, w) for b in sizes)
    spent = cost.compile_s * len(set(sizes))
    verdict = saved >= cost.worth * spent
    why = (
        f"auto: {workload.samples} samples × {workload.steps} steps would save ~{saved:.0f} s of "
        f"~{spent:.0f} s compiling ({'≥' if verdict else '<'} {cost.worth:g}×)"
    )
    return verdict, why


def choose_layout(requested: bool | str, device: DeviceInfo, workload: Workload, compiled: bool) -> tuple[bool, str]:
    """channels_last: on CUDA only compiled (eager GroupNorm has no channels_last kernel); on CPUs as measured."""
    if requested != AUTO:
        return bool(requested), "as set"
    if not workload.parameters:
        return False, "auto: the prior has no network"
    if device.type == "cuda":
        if compiled:
            return True, "auto: compiled, as measured (inductor plans the layout)"
        return False, "auto: eager CUDA GroupNorm has no channels_last kernel"
    measured = ", ".join(f"{v:.2f}× {k}" for k, v in CPU_CHANNELS_LAST_SPEEDUP.items())
    if min(CPU_CHANNELS_LAST_SPEEDUP.values()) > 1.05:
        return True, f"auto: faster on CPUs as measured ({measured})"
    return False, f"auto: not faster on every network measured on CPUs ({measured})"


def choose_cudnn(device: DeviceInfo) -> tuple[bool, str]:
    if device.type != "cuda":
        return False, "not CUDA"
    if CUDNN_BENCHMARK_SPEEDUP is None:
        return False, "auto: its gain is still to be measured"
    wins = CUDNN_BENCHMARK_SPEEDUP > 1.02
    return wins, f"auto: {CUDNN_BENCHMARK_SPEEDUP:.2f}× measured"
