"""Image quality metrics (torchmetrics) on [0, 1] images: PSNR, SSIM and LPIPS per image, FID over a set.

Reconstructions are scored as they come out of the sampler, clipped to [0, 1]; no per-image min–max
rescaling (the official DPS code rescales the PNGs it saves, which changes every score). FID compares 8-bit
images, as FID always does: the reconstructions saved as PNGs and the ground truth quantised the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from dps_exp.denoisers.weights import file_sha256
from dps_exp.metrics.backbones import BackboneError, ensure_backbone

log = logging.getLogger(__name__)
MetricName = Literal["psnr", "ssim", "lpips", "fid"]
BACKBONES = {"lpips": None, "fid": "inception"}  # None: the configured LPIPS network
SET_LEVEL = ("fid",)
"""Metrics scored over a whole set (from the reconstructions on disk, once the set is complete), not per image:
the one place that says so; `Metrics.over_set` scores them."""
FID_BATCH = 32
DEFAULT_NAMES: tuple[MetricName, ...] = ("psnr", "ssim", "lpips")
"""What `metrics.names=null` (conf/metrics/default.yaml) scores. Of the default set, a metric whose backbone is
missing and cannot be downloaded is left out with a warning; a metric named in `metrics.names` stops the run."""


# torchmetrics and torchvision load where they are used (seconds of imports): a config error on the command line is
# reported before they load, while the config is validated against this module's classes.


def psnr(x: Tensor, ref: Tensor) -> Tensor:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(x, ref, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(x: Tensor, ref: Tensor) -> Tensor:
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(x, ref, data_range=1.0, reduction="none")


FUNCTIONS = {"psnr": psnr, "ssim": ssim}


def to_uint8(x: Tensor) -> Tensor:
    """[0, 1] float → uint8, rounded as torchvision's `save_image` rounds (so both FID sets match)."""
    return x.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)


class Metrics:
    """Scores reconstructions against ground truth, both (B, 3, H, W) in [0, 1] as they are (clipped, no per-image
    min–max rescaling).

    `names`: psnr, ssim and lpips are scored per image by `__call__` ({name: (B,)}); fid is scored over a
    whole set by `fid`; None is the default set, `DEFAULT_NAMES`, of which `check` leaves LPIPS out (one warning,
    the reason kept in `left_out`) when its backbone is missing, where a metric named in a list stops the run.
    `lpips_net`: LPIPS's backbone, `vgg` (the DPS evaluation) or `alex` (LPIPS's own default). `fid_features`:
    the Inception layer FID compares, 2048 (the standard, the paper's) or a smaller one. Backbone weights come
    from the torch hub cache (`dps_exp.metrics.backbones`); `check` fetches them up front.

    Args:
        names: null: the default set, PSNR, SSIM and LPIPS, where LPIPS is left out (one warning line, and
            `metrics.lpips` in summary.json says why) when its backbone is not on disk and cannot be downloaded; a
            list: exactly those, and a missing backbone stops the run. Per image: torchmetrics PSNR and SSIM (data
            range 1), LPIPS; over each run's whole set: FID (torchmetrics, needs the `fid` extra), between the 8-bit
            reconstructions and the ground truth, computed from disk at the end (null with a reason below 2 images
            or for an interrupted run)
        lpips_net: LPIPS backbone: `vgg` (the DPS evaluation script's) or `alex` (LPIPS's default)
        fid_features: Inception features FID compares: 2048 (standard, the paper's); 64, 192, 768 are cheaper and not
            comparable
    """

    def __init__(
        self,
        names: Sequence[MetricName] | None = None,
        lpips_net: Literal["vgg", "alex"] = "vgg",
        fid_features: Literal[64, 192, 768, 2048] = 2048,
    ):
        self.chosen = names is not None
        self.names: list[str] = list(DEFAULT_NAMES if names is None else names)
        self.lpips_net, self.fid_features = lpips_net, fid_features
        self.left_out: dict[str, str] = {}
        """Metrics of the default set left out because their backbone is missing: {metric: why, how to get it}."""
        self._lpips = None

    @property
    def per_image(self) -> list[str]:
        return [n for n in self.names if n not in SET_LEVEL]

    @property
    def set_level(self) -> list[str]:
        return [n for n in self.names if n in SET_LEVEL]

    def check(self, required: Sequence[str] = ()) -> dict[str, dict]:
        """Make sure the backbone of every metric to score is on disk; returns {metric: {backbone, file, sha256}}
        for the record. A missing one stops the run before any work (BackboneError) when the metric was named
        in `names` or is `required` (the metric a sweeper optimizes); one of the default set is left out instead,
        with one warning line, its reason kept in `left_out`."""
        found = {}
        for metric, backbone in BACKBONES.items():
            if metric not in self.names:
                continue
            backbone = backbone or self.lpips_net
            without = "metrics.names=[" + ",".join(n for n in self.names if n != metric) + "]"
            try:
                path = ensure_backbone(backbone, metric, without)
            except BackboneError as err:
                if self.chosen or metric in required:
                    raise
                self.names.remove(metric)
                self.left_out[metric] = f"{metric} is left out of the default metrics: {err}"
                log.warning("%s", self.left_out[metric])
                continue
            found[metric] = {"backbone": backbone, "file": str(path), "sha256": file_sha256(path)}
        return found

    @torch.no_grad()
    def __call__(self, x: Tensor, ref: Tensor) -> dict[str, Tensor]:
        x, ref = x.float(), ref.float()
        scores = {}
        for name in self.per_image:
            scores[name] = (self.lpips(x, ref) if name == "lpips" else FUNCTIONS[name](x, ref)).reshape(-1)
        return scores

    def lpips(self, x: Tensor, ref: Tensor) -> Tensor:
        """LPIPS of each pair, (B,); 0 for identical images."""
        if self._lpips is None:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            ensure_backbone(self.lpips_net, "lpips")
            self._lpips = LearnedPerceptualImagePatchSimilarity(self.lpips_net, reduction="none", normalize=True)
        self._lpips = self._lpips.to(x.device)
        self._lpips.update(x, ref)
        scores = self._lpips.compute()
        self._lpips.reset()
        return scores

    def over_set(self, name: str, pairs: Sequence[tuple[Path, Callable[[], Tensor]]], device="cpu") -> dict:
        """Set-level metric `name` over (reconstruction PNG, ground truth) pairs: {"value", "n"[, "reason"]}."""
        return {"fid": self.fid}[name](pairs, device)

    @torch.no_grad()
    def fid(self, pairs: Sequence[tuple[Path, Callable[[], Tensor]]], device: torch.device | str = "cpu") -> dict:
        """FID between reconstructions and their ground truth: each pair is the path of a reconstruction's
        8-bit PNG and a function returning its ground truth, (3, H, W) in [0, 1].

        Returns {"value": FID, "n": number of pairs}; with fewer than 2 pairs FID is undefined and `value`
        is None with a `reason`.
        """
        if len(pairs) < 2:
            return {"value": None, "n": len(pairs), "reason": f"FID needs at least 2 images, the set has {len(pairs)}"}
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchvision.io import ImageReadMode, decode_image

        weights = ensure_backbone("inception", "fid")
        metric = FrechetInceptionDistance(self.fid_features, feature_extractor_weights_path=str(weights)).to(device)
        for first in range(0, len(pairs), FID_BATCH):
            chunk = pairs[first : first + FID_BATCH]
            fake = torch.stack([decode_image(str(path), mode=ImageReadMode.RGB) for path, _ in chunk])
            metric.update(fake.to(device), real=False)
            metric.update(to_uint8(torch.stack([truth() for _, truth in chunk])).to(device), real=True)
        return {"value": float(metric.compute()), "n": len(pairs)}
