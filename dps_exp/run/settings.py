"""The run's top-level keys, the validation of a whole config, and the identity of a run's results: every
setting that can change a row's numbers, against which an output directory is checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from dps_exp.config import PER_SAMPLE, Range, check_node, per_sample_keys
from dps_exp.errors import ConfigError
from dps_exp.metrics.image import DEFAULT_NAMES
from dps_exp.run.points import flatten, point_id, with_values

GROUPS = ("schedule", "physics", "denoiser", "sampler", "data", "metrics", "logger")
SCIENCE = ("schedule", "physics", "denoiser", "sampler")
"""The groups that define a result, besides its data and its scores."""
BATCHING = ("batch_size", "limit", "shard", "num_shards")
"""Data keys that say which images a job runs and how many at once, not what a result is."""
RESULT_KEYS = {"precision": "fp32", "compile": False, "channels_last": False, "samples": 1}
"""Top-level keys (with their resolved values' defaults) that change a result: bf16 moves PSNR by ~0.1 dB, compiled
kernels and another memory layout round differently, several draws add set scores to each row."""
SPEED_KEYS = ("precision", "compile", "channels_last")
"""The result keys that may be `auto`: a run's identity holds what they resolved to (speed.py), never `auto`."""


class Settings:
    """Every run's seed, device, speed and draw settings (the top-level keys of conf/config.yaml).

    Args:
        seed: each image's random streams derive from (seed, image index)
        device: `auto` (CUDA when available; in a sweep on several GPUs each parallel job claims its own), `cpu` or
            `cuda`
        precision: `fp32` or `bf16` (autocast around the network; the DPS update stays fp32); `auto`: bf16 where its
            measured effect on PSNR is within 0.05 dB and it is faster, else fp32 (docs/performance.md, "Fast defaults")
        compile: `torch.compile` the network (its first steps are slow while it compiles; kernels are cached on disk
            for later jobs); `graphs`: also CUDA graphs (`mode="reduce-overhead"`, CUDA only); `auto`: compile when
            the run's images × points × steps save at least twice the compilation time (CUDA only)
        channels_last: the network in channels_last memory format (on CUDA only with `compile`: eager, the UNet's
            GroupNorms convert the layout back and forth; a warning says so); `auto`: on CUDA when compiled
        samples: N posterior draws per measurement, batched like sweep points (same operator and measurement; draw 0
            is the single-draw result). N > 1 adds `<metric>_of_mean` (the metrics of the draws' mean) and, for priors
            with an exact posterior (`gmm`, `gaussian`) under a linear operator with Gaussian noise and images of at
            most 4096 values (e.g. 32×32 RGB: the algebra is dense), `mean_rmse`, `sliced_w2`, `coverage` with what
            exact draws would score (`mean_rmse_floor`, `sliced_w2_floor`, `coverage_expected`); the panel gains the
            mean
        optimized_metric: the job's return value, for sweepers (Optuna): the mean over its points of this per-image
            metric's mean (it must be scored: one of `metrics.names`)
        progress: progress bars over images and sampler steps
        resume: `true`: continue the newest run (with `-m`: sweep) whose overrides are the same, instead of a new
            directory
        sweep_jobs: set by the vectorized sweeper: the sequential job number of each packed point (leave it alone)
    """

    def __init__(
        self,
        seed: Annotated[int, Range(0, None), PER_SAMPLE] = 0,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        precision: Literal["auto", "fp32", "bf16"] = "auto",
        compile: Literal["auto", "graphs"] | bool = "auto",
        channels_last: Literal["auto"] | bool = "auto",
        samples: Annotated[int, Range(1, 1024)] = 1,
        optimized_metric: str = "psnr",
        progress: bool = True,
        resume: bool = False,
        sweep_jobs: list[int] | None = None,
    ):
        self.seed, self.device, self.progress, self.resume = seed, device, progress, resume
        self.precision, self.compile, self.channels_last = precision, compile, channels_last
        self.samples, self.optimized_metric = samples, optimized_metric
        self.sweep_jobs = sweep_jobs


def settings_of(spec: Mapping) -> Settings:
    return Settings(**{k: v for k, v in spec.items() if k not in GROUPS})


def validate(spec: Mapping) -> None:
    """Check every group against its class signature and the top-level keys against Settings."""
    for group in GROUPS:
        if group not in spec:
            raise ConfigError(f"the config has no '{group}' group")
        check_node(spec[group], group)
    check_node({k: v for k, v in spec.items() if k not in GROUPS}, "", target=Settings)
    metric = spec.get("optimized_metric", "psnr")
    names = spec["metrics"].get("names", [metric])
    if metric not in (DEFAULT_NAMES if names is None else names):
        names = ", ".join(DEFAULT_NAMES if names is None else names)
        raise ConfigError(f"optimized_metric={metric!r} is not allowed: it must be one of the scored metrics ({names})")


def per_sample_of(spec: Mapping) -> list[str]:
    """The dotted keys that may differ per sample: the seed, then each group's PER_SAMPLE parameters."""
    return ["seed"] + [k for g in GROUPS for k in per_sample_keys(spec[g], g)]


class Identity:
    """What a result depends on besides its sweep point (its per-sample values) and its image: the science
    groups, the data (less which images and how many at once), the metrics' settings and the numerics that
    change its numbers, with the device type. Rows of another identity never mix in one directory.

    `scored`: the per-image metrics actually scored (a metric left out because its backbone is missing makes
    rows that lack it); `resolved`: what `precision`, `compile` and `channels_last` resolved to (speed.py), so a
    resumed run whose `auto` resolves differently is refused."""

    def __init__(
        self,
        spec: Mapping,
        per_sample: Sequence[str],
        device_type: str,
        scored: Sequence[str],
        resolved: Mapping[str, Any] | None = None,
    ):
        static: dict[str, Any] = {g: spec[g] for g in SCIENCE}
        static["data"] = {k: v for k, v in spec["data"].items() if k not in BATCHING}
        static["metrics"] = spec["metrics"]
        self.config = with_values(static, "", {k: None for k in per_sample})
        self.per_sample = frozenset(per_sample)
        settings = {k: spec.get(k, default) for k, default in RESULT_KEYS.items()} | dict(resolved or {})
        if unresolved := [k for k in SPEED_KEYS if settings[k] == "auto"]:
            raise ValueError(f"an identity needs resolved values, not auto: {', '.join(unresolved)}")
        self.settings = settings | {"device": device_type, "metrics": list(scored)}
        self.id = point_id({"config": self.config, "settings": self.settings})

    def mismatch(self, row: Mapping) -> str | None:
        """Why a recorded row is not of this identity (None when it is): the first setting that differs, by
        name, or that the configuration does."""
        if row.get("config_id") == self.id:
            return None
        theirs = row.get("settings")
        if isinstance(theirs, Mapping):
            for key, ours in self.settings.items():
                if theirs.get(key) != ours:
                    return f"made with {key}={_show(theirs.get(key))} (this run: {key}={_show(ours)})"
        params = row.get("params")  # each row's hyperparameters, data and metrics settings (Rows.params)
        if isinstance(params, Mapping):
            for key, ours in flatten(self.config).items():
                if key not in self.per_sample and key in params and params[key] != ours:
                    return f"made with {key}={_show(params[key])} (this run: {key}={_show(ours)})"
        return f"of another configuration (config_id {row.get('config_id')}, this run is {self.id})"


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)
