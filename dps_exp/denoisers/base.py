"""The prior's interface: an ε-prediction network on [-1, 1] images, called with integer timesteps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from dps_exp.errors import ConfigError
from dps_exp.schedule import Schedule


@dataclass
class Prediction:
    """What a prior says about x_t at timestep t (all (B, C, H, W))."""

    eps: Tensor
    """ε̂(x_t, t), the predicted noise."""
    x0: Tensor
    """x̂0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t, Tweedie's estimate of the clean image (not clipped)."""
    var: Tensor | None = None
    """Learned-range variance output v ∈ [−1, 1] (guided-diffusion), for networks that have it."""


class Denoiser(nn.Module):
    """An ε-prediction diffusion prior, called with integer timesteps. Closed-form priors (the Gaussian, the
    GMM) implement `forward`; neural ones are `NetworkDenoiser`s.

    The ε ↔ x̂0 conversions live here and nowhere else.
    """

    learned_variance: ClassVar[bool] = False
    """Whether `forward` also returns guided-diffusion's learned-range variance (`Prediction.var`)."""
    SUPPLIED: ClassVar[tuple[str, ...]] = ("schedule",)
    """Constructor arguments the Run passes, not the config."""
    shape: tuple[int, int, int] | None = None
    """The images (C, H, W) the prior is defined on; None: any size that is a multiple of `size_multiple`."""
    size_multiple: int = 1
    """Image sides must be multiples of this (a UNet halves them down to its coarsest level)."""
    provenance: dict | None = None
    """Where the weights come from (`source`, `sha256`, and `cast` when they were converted), for the record;
    None for a prior without weights."""

    def __init__(self, schedule: Schedule):
        super().__init__()
        ab = schedule.alphas_cumprod
        self.register_buffer("alphas_cumprod", ab.float(), persistent=False)
        self.register_buffer("sqrt_ab", ab.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_1m_ab", (1 - ab).sqrt().float(), persistent=False)

    def check_shape(self, shape: Sequence[int]) -> None:
        """Stop before any work when images of this (C, H, W) cannot go through the prior: a prior of fixed
        images (the GMM) takes only those, a UNet only sides it can halve down to its coarsest level."""
        if self.shape is not None and tuple(self.shape) != tuple(shape):
            raise ConfigError(
                f"the images are {tuple(shape)} (C, H, W) but {type(self).__name__} is defined on {tuple(self.shape)}"
            )
        if any(side % self.size_multiple for side in shape[1:]):
            raise ConfigError(
                f"data.size={shape[-1]} is not allowed: the UNet of {type(self).__name__} halves the image down to "
                f"its coarsest level, so the size must be a multiple of {self.size_multiple}"
            )

    def accelerate(self, precision: str = "fp32", compile: bool | str = False, channels_last: bool = False) -> None:
        """Speed options for networks; a closed-form prior has none to take."""

    def forward(self, x_t: Tensor, t: Tensor) -> Prediction:
        """x_t (B, C, H, W) on the diffusion scale, t (B,) long in [0, T)."""
        raise NotImplementedError

    def _coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.sqrt_ab[t].view(-1, 1, 1, 1), self.sqrt_1m_ab[t].view(-1, 1, 1, 1)

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        a, s = self._coefficients(t)
        return (x_t - s * eps) / a

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        a, s = self._coefficients(t)
        return (x_t - a * x0) / s


class NetworkDenoiser(Denoiser):
    """A prior that is a neural network `net(x_t, t)`: its raw output is ε, or ε and the learned-range
    variance v stacked on channels when `learned_variance`. Frozen by the Run; sped up by `accelerate`."""

    def __init__(self, schedule: Schedule, net: nn.Module, size_multiple: int = 1):
        super().__init__(schedule)
        self.net = net
        self.size_multiple = size_multiple
        self.autocast_dtype: torch.dtype | None = None
        self.channels_last = self.compiled = self.graphs = False

    def accelerate(self, precision: str = "fp32", compile: bool | str = False, channels_last: bool = False) -> None:
        """bf16 autocast around the network (the DPS update stays fp32), channels_last memory format,
        torch.compile of the network module (`compile="graphs"`: also CUDA graphs, `mode="reduce-overhead"`,
        which replay a step's kernels without launching each: for small batches, where launches bound a step).

        Compiled with `dynamic=False`: each batch size is compiled once, for its own shape (a run meets at most a
        few: its batch, the last one's remainder, halvings after running out of memory). Called again with the
        same precision it changes nothing already done; the network is compiled once."""
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        if precision == "bf16":
            # Store the frozen conv/linear weights in bf16 once: autocast caches its casts only for weights that
            # require grad, so frozen fp32 weights would be cast again at every call (≈14% of a CPU step).
            for module in self.net.modules():
                if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
                    module.to(torch.bfloat16)
        if compile and not self.compiled:
            self.net.compile(mode="reduce-overhead" if compile == "graphs" else None, dynamic=False)
            self.compiled, self.graphs = True, compile == "graphs"

    def forward(self, x_t: Tensor, t: Tensor) -> Prediction:
        x_in = x_t.contiguous(memory_format=torch.channels_last) if self.channels_last else x_t
        if self.graphs:  # a new step: the graphs may overwrite the last step's outputs, which the loop has used
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(x_t.device.type, self.autocast_dtype or torch.float32, self.autocast_dtype is not None):
            out = self.net(x_in, t)
        out = out.float()
        channels = x_t.shape[1]
        eps, var = (out[:, :channels], out[:, channels:]) if self.learned_variance else (out, None)
        return Prediction(eps=eps, x0=self.x0_from_eps(x_t, t, eps), var=var)
