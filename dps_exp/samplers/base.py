"""What every sampler provides: the contract the Run, the scripts and the sweeps rely on.

A sampler is one class (constructor signature = its config schema, per-sample values marked PER_SAMPLE) and one
YAML in conf/sampler/. It owns its data-consistency term, states what it needs from the prior and the forward
model (`check`, called before any work), counts its own network evaluations, and says what to try when its
samples diverge. Nothing outside the sampler knows how it walks from noise to a reconstruction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from dps_exp.denoisers.base import Denoiser
from dps_exp.physics.base import Physics
from dps_exp.schedule import Schedule

NoiseSource = Callable[[], Tensor]
"""Returns the next standard-normal draw, shaped like the image batch (B, C, H, W), each sample from its own
stream: the sampler's only source of randomness."""

Callback = Callable[[int, Tensor, Tensor], None]
"""Called after each step with (step index, x_next, x̂0); for logging, never for control flow."""


@dataclass
class SampleResult:
    x: Tensor
    """The reconstruction (B, C, H, W), on the [-1, 1] scale, not clipped."""
    diverged_at: Tensor
    """(B,) long: the step at which the sample stopped being finite (its x is then the last finite iterate),
    or −1."""
    nfe: int | list[int]
    """Network function evaluations per sample (a forward pass, with its input-gradient backward if any): one
    number for all, or one per sample."""


class Sampler(ABC):
    """A posterior sampler: `sample(y, physics, prior, schedule, noise) -> SampleResult`.

    Hyperparameters marked PER_SAMPLE arrive as numbers or (B,) tensors (one value per sample of the batch);
    a sample's result must not depend on the rest of its batch.
    """

    divergence_hint: ClassVar[str] = "a smaller step size usually helps"
    """What to try when samples diverge (NaN or inf), said with the run's warning."""
    continuous: ClassVar[bool] = False
    """Whether `runner` gives a continuous-batching `Runner` (samples of different lengths share the batch)."""

    def check(self, prior: Denoiser, physics: Physics) -> None:
        """Raise ConfigError (one line: what is missing, and the options that would work) when this sampler
        cannot run with this prior and this forward model. Called once, before any work. Default: any."""
        return None

    def runner(self, schedule: Schedule, prior: Denoiser, capacity: int, shape, device) -> Runner | None:
        """For continuous batching: a `Runner` of `capacity` slots for images of `shape` (C, H, W), or None when
        this sampler walks a whole batch at once only (the default)."""
        return None

    def length(self, schedule: Schedule) -> int:
        """Network evaluations per sample with these settings (the default: none, a sampler without a network):
        what the run's speed rules weigh, and, for samplers with a `runner`, what decides continuous batching."""
        return 0

    @abstractmethod
    def sample(self, y: Tensor, physics: Physics, prior: Denoiser, schedule: Schedule, noise: NoiseSource,
               callback: Callback | None = None, progress: bool = False) -> SampleResult:  # fmt: skip
        """Reconstruct x (B, C, H, W) from the measurements y under the drawn `physics`."""


class Runner(ABC):
    """Continuous batching: samples enter free slots (`admit`) and leave at the end of their own chains (`step`
    returns them), so a batch stays full while samples of different lengths come and go. A sample's result is the
    one `Sampler.sample` gives it alone."""

    capacity: int
    n: int
    """Slots occupied."""

    @abstractmethod
    def admit(self, token: object, sampler: Sampler, physics: Physics, y: Tensor, gen) -> None:
        """Start a sample in a free slot: its own sampler (its per-sample values), operator and measurement (a batch
        of one) and random stream; `token` comes back with its result."""

    @abstractmethod
    def step(self) -> list[tuple[object, Tensor, Tensor, int]]:
        """One network pass over the occupied slots; returns (token, x (C, H, W), diverged_at, nfe) of each sample
        that has just ended, its slot freed."""
