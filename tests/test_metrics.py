"""LPIPS and FID: their defining properties on random backbones, and what happens when a backbone is missing."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision.utils import save_image

from dps_exp.config import resolve
from dps_exp.denoisers import pretrained
from dps_exp.metrics import backbones
from dps_exp.metrics.backbones import BackboneError, ensure_backbone
from dps_exp.metrics.image import Metrics
from dps_exp.run.experiment import Run
from tests.helpers import compose


@pytest.fixture
def images():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(4, 3, 32, 32, generator=gen), torch.rand(4, 3, 32, 32, generator=gen)


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_of_an_image_with_itself_is_zero(net, images, backbones):
    x, y = images
    metrics = Metrics(["psnr", "lpips"], lpips_net=net)
    assert torch.equal(metrics(x, x)["lpips"], torch.zeros(4))
    scores = metrics(x, y)
    assert scores["lpips"].shape == (4,) and (scores["lpips"] > 0).all() and scores["psnr"].shape == (4,)


def test_fid_of_a_set_with_itself_is_zero_and_of_another_set_is_not(images, backbones, tmp_path):
    x, y = images
    paths = []
    for i, img in enumerate(x):
        paths.append(tmp_path / f"{i}.png")
        save_image(img, paths[-1])  # 8-bit, as the Run saves reconstructions
    metrics = Metrics(["fid"], fid_features=64)
    same = metrics.fid([(p, lambda i=i: x[i]) for i, p in enumerate(paths)])
    other = metrics.fid([(p, lambda i=i: y[i]) for i, p in enumerate(paths)])
    assert same["n"] == 4 and abs(same["value"]) < 1e-4
    assert other["value"] > 1e3 * max(abs(same["value"]), 1e-9)
    assert metrics.fid([(paths[0], lambda: x[0])])["value"] is None  # undefined for one image


def offline(monkeypatch, tmp_path):
    """An empty TORCH_HOME and no network: every download fails as it does on a machine without one."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    attempts = []

    def no_network(url, dst, hash_prefix=None, progress=True):
        attempts.append((url, hash_prefix))
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return attempts


def test_a_missing_backbone_stops_the_run_before_the_prior_is_loaded(monkeypatch, tmp_path):
    attempts = offline(monkeypatch, tmp_path)
    monkeypatch.setattr(pretrained, "hub_file", lambda *a: pytest.fail("the prior was fetched before the check"))
    spec = resolve(compose(["denoiser=ffhq", "metrics=paper", "logger=none", "progress=false"]))
    with pytest.raises(BackboneError) as err:
        Run(spec, tmp_path / "out")
    message, folder = str(err.value), tmp_path / "torch" / "hub" / "checkpoints"
    assert message.startswith("lpips needs the vgg weights vgg16-397923af.pth, which are not in")
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message
    assert f"put it at {folder / 'vgg16-397923af.pth'}" in message and "TORCH_HOME" in message
    assert "metrics.names=[psnr,ssim,fid]" in message
    assert attempts == [("https://download.pytorch.org/models/vgg16-397923af.pth", "397923af")]
    assert not list(tmp_path.rglob("results.jsonl"))


def test_fid_names_the_inception_file_and_a_metric_switched_off_needs_nothing(monkeypatch, tmp_path):
    attempts = offline(monkeypatch, tmp_path)
    with pytest.raises(
        BackboneError, match=r"fid needs the inception weights weights-inception-2015-12-05-6726825d\.pth"
    ):
        Metrics(["psnr", "fid"]).check()
    assert attempts[-1] == (backbones.backbone_url("inception")[0], None)  # torch-fidelity checks no hash either
    assert Metrics(["psnr", "ssim"]).check() == {}
    assert len(attempts) == 1


def test_a_downloaded_backbone_lands_where_torchmetrics_looks(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, dst, **kw: Path(dst).write_bytes(b"w"))
    path = ensure_backbone("alex", "lpips")
    assert path == tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth" and path.read_bytes() == b"w"
