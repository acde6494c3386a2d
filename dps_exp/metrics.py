"""Image quality metrics (torchmetrics), per image, on [0, 1] images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

MetricName = Literal["psnr", "ssim"]


def psnr(x: Tensor, ref: Tensor) -> Tensor:
    return peak_signal_noise_ratio(x, ref, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(x: Tensor, ref: Tensor) -> Tensor:
    return structural_similarity_index_measure(x, ref, data_range=1.0, reduction="none")


FUNCTIONS = {"psnr": psnr, "ssim": ssim}


class Metrics:
    """Scores reconstructions against ground truth, both (B, 3, H, W) in [0, 1]; returns {name: (B,)}."""

    def __init__(self, names: Sequence[MetricName] = ("psnr", "ssim")):
        self.names = list(names)

    def __call__(self, x: Tensor, ref: Tensor) -> dict[str, Tensor]:
        return {name: FUNCTIONS[name](x.float(), ref.float()).reshape(-1) for name in self.names}
