"""Metric backbones (LPIPS's VGG16 or AlexNet, FID's Inception v3): the one place that fetches their weights.

torchmetrics builds LPIPS from torchvision's ImageNet weights and FID from torch-fidelity's Inception weights;
both read them from the torch hub cache, `torch.hub.get_dir()/checkpoints/<file>` (TORCH_HOME/hub/checkpoints,
default ~/.cache/torch/hub/checkpoints). `ensure_backbone` finds the file there or downloads it; when neither
works it stops the run with the file it needs, its URL and where to put it. (LPIPS's linear heads ship inside
torchmetrics: nothing to fetch.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

import torch

from dps_exp.errors import UserError

log = logging.getLogger(__name__)


class BackboneError(UserError):
    """A metric backbone whose weights are missing and cannot be downloaded."""


def backbone_url(name: str) -> tuple[str, bool]:
    """The URL the metric libraries download `name` from (`vgg`, `alex`, `inception`), and whether the
    file name carries a sha256 prefix that the download is checked against (torchvision's do)."""
    if name == "inception":
        # torchmetrics' FID runs torch-fidelity's FeatureExtractorInceptionV3 (torchmetrics.image.fid's
        # NoTrainInceptionV3 subclasses it), whose loader fetches URL_INCEPTION_V3 into the hub cache: neither
        # package offers the URL any other way (tests/test_metrics.py checks it is what that loader fetches)
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
        except ModuleNotFoundError:
            raise BackboneError(
                "fid needs the torch-fidelity package (torchmetrics' FID runs its Inception network): "
                "pip install 'dps-exp[fid]', or leave fid out of metrics.names"
            ) from None

        return URL_INCEPTION_V3, False  # torch-fidelity does not check it either
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    weights = {"vgg": VGG16_Weights.IMAGENET1K_V1, "alex": AlexNet_Weights.IMAGENET1K_V1}[name]
    return weights.url, True


def backbone_path(name: str) -> Path:
    """Where the metric library looks for the weights of `name`."""
    url, _ = backbone_url(name)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def ensure_backbone(name: str, metric: str, without: str = "") -> Path:
    """The weights file of backbone `name`, downloaded into the torch hub cache if it is not there yet.

    `metric` names the metric that needs it and `without` the override that drops it, for the message.
    Raises BackboneError (naming the file, its URL and the folder it goes in) when the file is missing and
    the download fails.
    """
    url, check = backbone_url(name)
    path = backbone_path(name)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = torch.hub.HASH_REGEX.search(path.name) if check else None  # torchvision's sha256-prefix names
    try:
        log.info("downloading the %s backbone for %s: %s -> %s", name, metric, url, path)
        torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix.group(1) if prefix else None)
    except Exception as err:  # offline, DNS, proxy, a hash mismatch: all mean "the file is not here"
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        raise BackboneError(
            f"{metric} needs the {name} weights {path.name}, which are not in {path.parent} and cannot be "
            f"downloaded ({reason}). On a machine with network download {url} and put it at {path} (the folder "
            f"follows TORCH_HOME), or leave {metric} out of metrics.names{f' ({without})' if without else ''}."
        ) from None
    return path
