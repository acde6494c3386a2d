"""Inpainting: a per-sample binary mask shared by the colour channels, y = m ⊙ x + n."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, Self

import torch
from torch import Tensor

from dps_exp import batch
from dps_exp.config import PER_SAMPLE, Range
from dps_exp.errors import ConfigError
from dps_exp.physics.base import LinearPhysics
from dps_exp.physics.noise import Noise
from dps_exp.physics.svd import Diagonal


class Masking(LinearPhysics):
    """y = m ⊙ x with a {0, 1} mask m (B, 1, H, W) that `draw` sets: A = A_T = A⁺ (a projection), U = V = I, s = m."""

    exact_pinv = True

    def __init__(self, noise: Noise | None):
        super().__init__(noise or Noise())
        self.m: Tensor | None = None

    def A(self, x: Tensor) -> Tensor:
        return self.m * x

    def A_T(self, y: Tensor) -> Tensor:
        return self.m * y

    def init(self, y: Tensor) -> Tensor:
        """A⁺ y = m ⊙ y: the measured pixels, zero (grey) where hidden."""
        return self.m * y

    def svd(self) -> Diagonal:
        return Diagonal(self.m.double())

    def state(self) -> dict[str, Tensor]:
        return {"mask": self.m}


class RandomInpainting(Masking):
    """y = m ⊙ x + n with one Bernoulli mask per image, shared by the three channels: each pixel is kept independently
    with probability `mask`.

    `mask` is the fraction of pixels KEPT (the tutorial's and deepinv's convention: mask=0.1 hides 90%;
    the paper's random inpainting hides 92%, mask=0.08; the official code's default hides 30–70%).

    Args:
        mask: fraction of pixels kept. 0.1 is the tutorial's; the paper hides 92%: 0.08 (`inpaint_random_paper`); the
            official code's config hides a uniform 30–70%
    """

    def __init__(
        self,
        mask: Annotated[float, Range(0, 1, lo_open=True), PER_SAMPLE] = 0.1,
        noise: Noise | None = None,
    ):
        super().__init__(noise)
        self.mask = mask

    def draw(self, shape: Sequence[int], gens: Sequence[torch.Generator], device: torch.device) -> Self:
        B, _, H, W = shape
        u = batch.rand((B, 1, H, W), gens, device="cpu", dtype=torch.float64)
        self.m = (u < batch.per_sample(self.mask, u)).to(device=device, dtype=torch.float32)
        return self


class BoxInpainting(Masking):
    """A `box`×`box` square hidden (m = 0), the rest kept; the mask is shared by the channels.

    placement `random`: the top-left corner is drawn per image, uniformly over every position that keeps
    `margin` pixels between the box and each image border (the paper: a 128 px box, 16 px margin, at 256 px).
    The official code (util/img_utils.py, `random_sq_bbox`) draws from `randint(margin, size − margin − box)`,
    whose exclusive upper end leaves out the one position touching the far margin; here both ends are in.
    placement `center`: the box sits in the middle of the image.

    Args:
        box: side of the hidden square in pixels. Paper: 128 at 256 px. box + 2·margin must fit the image
        margin: least distance in pixels between the box and each image border. Paper: 16
        placement: `random`: corner drawn per image (uniform over all positions inside the margin), as the paper;
            `center`
    """

    def __init__(
        self,
        box: Annotated[int, Range(1, None)] = 128,
        margin: Annotated[int, Range(0, None)] = 16,
        placement: Literal["random", "center"] = "random",
        noise: Noise | None = None,
    ):
        super().__init__(noise)
        self.box, self.margin, self.placement = box, margin, placement

    def corner(self, size: int, gen: torch.Generator) -> int:
        """The first row (or column) of the box along an image side of `size` pixels."""
        free = size - self.box - 2 * self.margin
        if free < 0:
            raise ConfigError(
                f"physics.box={self.box} with physics.margin={self.margin} does not fit a {size}-pixel image: "
                f"box + 2·margin must be ≤ {size}"
            )
        if self.placement == "center":
            return (size - self.box) // 2
        return self.margin + int(torch.randint(free + 1, (), generator=gen))

    def draw(self, shape: Sequence[int], gens: Sequence[torch.Generator], device: torch.device) -> Self:
        B, _, H, W = shape
        m = torch.ones(B, 1, H, W)
        for b, g in enumerate(gens):
            top, left = self.corner(H, g), self.corner(W, g)
            m[b, :, top : top + self.box, left : left + self.box] = 0
        self.m = m.to(device)
        return self
