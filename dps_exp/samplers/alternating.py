"""Fourier phase retrieval by alternating projections: what ER, HIO and OSS share (Fienup 1982; Rodriguez et al.,
J. Appl. Cryst. 46, 2013). No network: the prior is not used.

The measurement is y = |fftshift(F P x)| + n per channel (dps_exp/physics/phase.py): F the orthonormal 2-D DFT, P
the zero padding of the (H, W) image into the (H + 2p_h, W + 2p_w) grid. Each iteration k of every method takes
the current input x_k (on the padded grid) through the two constraint sets:

    x'_k   = P_M x_k = Re F⁻¹[ |y|₊ · F x_k / |F x_k| ]     Fourier magnitude (and realness): keep the phase of
                                                            F x_k, set the magnitude to max(y, 0)
    out_k  = P_C x'_k = clip(x'_k, −1, 1) on S, 0 off S      object domain: the support S (the unpadded image
                                                            region) and the image's range [-1, 1]

and the methods differ in how they make x_{k+1} from x_k, x'_k and out_k. The estimate of K iterations is
out_{K−1}, cropped to S; it is the nearest point of C to the last Fourier-consistent x', so it always satisfies
the object constraints (but only approximately the magnitudes).

Why the range [-1, 1]: it is true of every image (the images live there) and P_C stays an exact Euclidean
projection (a box on S, per pixel). It is what positivity is to Fienup's non-negative objects: prior knowledge
of the object's values, and it bounds the amplitudes that noisy magnitudes would otherwise inflate. (It cannot
remove the ambiguities of this forward model: |F P x| is the same for −x and for x rotated by 180° within the
support, each channel on its own; that is what the paper's best of 4 samples is for.)

Negative y (Gaussian noise on small magnitudes) is projected to 0, the nearest magnitude. Poisson noise is
refused: its y is clipped to [-1, 1] (dps_exp/physics/noise.py), no longer a magnitude above 1.

Colour: each channel is its own phase-retrieval problem, so each comes back up to its own sign and 180° rotation
(the published algorithms are single-channel, and by default the channels are left as solved). `align_channels`
(our step, off by default) turns channels 1, 2, … to the variant that correlates best with channel 0, as the
channels of natural images do; the whole image keeps the ambiguity.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from dps_exp.config import Range
from dps_exp.denoisers.base import Denoiser
from dps_exp.errors import ConfigError
from dps_exp.physics.base import Physics
from dps_exp.physics.phase import PhaseRetrieval
from dps_exp.samplers.base import Callback, NoiseSource, Sampler, SampleResult
from dps_exp.samplers.dps import keep_finite
from dps_exp.schedule import Schedule


class FourierMagnitudes:
    """The two constraint sets of one batch: the measured magnitudes |y|₊ (in the DFT's own order) and the support.

    Shapes: y (B, C, H + 2p_h, W + 2p_w) as the operator returns it (zero frequency centred); images (B, C, H, W).
    """

    def __init__(self, y: Tensor, physics: PhaseRetrieval, image_size: tuple[int, int]):
        H, W = image_size
        self.pad = physics.padding(H, W)  # (left, right, top, bottom)
        pw, _, ph, _ = self.pad
        if y.shape[-2:] != (H + 2 * ph, W + 2 * pw):
            raise ValueError(f"y of shape {tuple(y.shape)} is not |F P x| of {H}×{W} images")
        self.magnitude = torch.fft.ifftshift(y, dim=(-2, -1)).clamp_min(0)
        self.rows, self.cols = slice(ph, ph + H), slice(pw, pw + W)
        support = torch.zeros(y.shape[-2:], dtype=torch.bool, device=y.device)
        support[self.rows, self.cols] = True
        self.support = support

    def embed(self, image: Tensor) -> Tensor:
        """P: the (B, C, H, W) image zero-padded onto the grid."""
        return F.pad(image, self.pad)

    def crop(self, x: Tensor) -> Tensor:
        """The support's (B, C, H, W) values of a grid x."""
        return x[..., self.rows, self.cols]

    def project(self, x: Tensor) -> Tensor:
        """x' = P_M x: the real part of F⁻¹ of the measured magnitudes under the phases of F x."""
        X = torch.fft.fft2(x, norm="ortho")
        return torch.fft.ifft2(torch.polar(self.magnitude, X.angle()), norm="ortho").real

    def constrain(self, x: Tensor) -> Tensor:
        """P_C x: clip to [-1, 1] on the support, zero off it (the Euclidean projection onto C)."""
        return torch.where(self.support, x.clamp(-1.0, 1.0), 0.0)

    def satisfied(self, x: Tensor) -> Tensor:
        """Where x already meets the object constraints (on the support and within [-1, 1]): bool like x."""
        return self.support & (x.abs() <= 1.0)

    def error(self, out: Tensor) -> Tensor:
        """(B,) Fourier error R_F = Σ| |F out| − |y|₊ | / Σ |y|₊ (Rodriguez et al.'s R-factor)."""
        fit = torch.fft.fft2(out, norm="ortho").abs()
        return (fit - self.magnitude).abs().flatten(1).sum(1) / self.magnitude.flatten(1).sum(1).clamp_min(1e-30)


def align_to_first_channel(x: Tensor) -> Tensor:
    """Each channel c ≥ 1 of x (B, C, H, W) as the one of ±x_c, ±rot180(x_c) (the same magnitudes |F P x_c|) whose
    centred correlation with channel 0 is largest."""
    variants = torch.stack([x, -x, x.flip(-2, -1), -x.flip(-2, -1)])  # (4, B, C, H, W)
    centred = variants - variants.mean((-2, -1), keepdim=True)
    score = (centred * centred[0, :, :1]).sum((-2, -1))  # (4, B, C): channel 0 scores its own x_0 highest
    pick = score.argmax(0)[None, :, :, None, None].expand(1, *x.shape)
    return variants.gather(0, pick)[0]


class AlternatingProjections(Sampler):
    """A Fourier phase-retrieval iteration from a random start (`noise()`, inside the support), run `restarts`
    times; per sample, the run with the lowest Fourier error R_F is kept. NFE 0.

    Args:
        iterations: iterations per run (each one projection onto the magnitudes and one onto the object constraints)
        restarts: independent random starts per sample; the one whose estimate fits the magnitudes best (lowest R_F)
            is returned (the paper's best of 4 is a different thing: `seed=[0,1,2,3]`, scored against the truth)
        align_channels: `true`: turn each channel after the first to the sign and 180° rotation (equally consistent
            with y) that correlates best with the first (not in the published algorithms); `false`: the channels as
            solved, each in its own orientation
    """

    name: ClassVar[str]
    """The option's name in conf/sampler/, for messages."""

    divergence_hint = "these projections stay finite for a finite y: check the measurement for NaN or inf"

    def __init__(
        self,
        iterations: Annotated[int, Range(1, None)] = 2000,
        restarts: Annotated[int, Range(1, None)] = 1,
        align_channels: bool = False,
    ):
        self.iterations, self.restarts, self.align_channels = iterations, restarts, align_channels

    def check(self, prior: Denoiser, physics: Physics) -> None:
        """Any prior (it is not used); only Fourier phase retrieval, with noise that keeps y a magnitude."""
        if not isinstance(physics, PhaseRetrieval):
            raise ConfigError(
                f"sampler={self.name} solves Fourier phase retrieval only (physics=phase_retrieval), "
                f"not {type(physics).__name__}"
            )
        if physics.noise.kind == "poisson":
            raise ConfigError(
                f"sampler={self.name} projects onto the measured magnitudes |F P x|, which Poisson noise clips to "
                "[-1, 1]; use physics.noise.kind=gaussian or none"
            )

    def sample(self, y: Tensor, physics: Physics, prior: Denoiser, schedule: Schedule, noise: NoiseSource,
               callback: Callback | None = None, progress: bool = False) -> SampleResult:  # fmt: skip
        """Each run starts from x_0 = P(noise()): a random real image on the support, i.e. random Fourier phases
        (Hermitian, as a real object's are) under the measured magnitudes after the first projection."""
        start = noise()
        problem = FourierMagnitudes(y, physics, start.shape[-2:])
        best_err = torch.full((y.shape[0],), torch.inf, device=y.device)
        best = diverged = None
        bar = tqdm(total=self.iterations * self.restarts, desc=f"{self.name} iterations", leave=False,
                   disable=not progress)  # fmt: skip
        for run in range(self.restarts):
            x0 = problem.embed(start if run == 0 else noise())
            out, err, run_diverged = self.solve(problem, x0, self.steps(callback, run, problem, bar))
            better = err < best_err  # NaN never wins
            best = out if best is None else torch.where(better.view(-1, 1, 1, 1), out, best)
            diverged = run_diverged if diverged is None else torch.where(better, run_diverged, diverged)
            best_err = torch.where(better, err, best_err)
        bar.close()
        x = problem.crop(best)
        return SampleResult(x=align_to_first_channel(x) if self.align_channels else x, diverged_at=diverged, nfe=0)

    def steps(self, callback: Callback | None, run: int, problem: FourierMagnitudes, bar: tqdm) -> Callback:
        """The per-iteration hook: progress, and the caller's callback with the cropped estimate out_k (the global
        iteration index counts across restarts)."""

        def step(i: int, out: Tensor, _: Tensor) -> None:
            bar.update()
            if callback is not None:
                image = problem.crop(out)
                callback(run * self.iterations + i, image, image)

        return step

    @abstractmethod
    def solve(self, problem: FourierMagnitudes, x: Tensor, step: Callback) -> tuple[Tensor, Tensor, Tensor]:
        """One run from the grid input x (B, C, H', W'); returns the estimate (on the grid), its (B,) Fourier
        error and the (B,) iteration at which the input stopped being finite (−1: never). `step(k, out_k, out_k)`
        after each iteration."""


Update = Callable[[Tensor, Tensor, Tensor], Tensor]
"""x_{k+1} from (x_k, x'_k, out_k), all on the grid (B, C, H', W')."""


def iterate(
    problem: FourierMagnitudes, x: Tensor, iterations: int, update: Update, step: Callback
) -> tuple[Tensor, Tensor, Tensor]:
    """The plain loop of ER and HIO: x_{k+1} = update(x_k, x'_k, out_k); returns out_{K−1}, its R_F, diverged_at."""
    diverged_at = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
    out = x
    for k in range(iterations):
        x_p = problem.project(x)
        out = problem.constrain(x_p)
        x, diverged_at = keep_finite(x, update(x, x_p, out), diverged_at, k)
        step(k, out, out)
    return out, problem.error(out), diverged_at
