"""LPIPS and FID: their defining properties on random backbones, and what happens when a backbone is missing."""

from __future__ import annotations

import json
import logging
import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision.utils import save_image

from dps_exp.config import resolve
from dps_exp.denoisers import pretrained
from dps_exp.errors import ConfigError
from dps_exp.metrics import backbones
from dps_exp.metrics.backbones import BackboneError, ensure_backbone
from dps_exp.metrics.image import Metrics
from dps_exp.run.experiment import Run
from tests.helpers import cli, compose


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


DEFAULT_RUN = ["denoiser=gaussian", "data.size=32", "data.limit=2", "sampler.steps=2", "logger=none", "progress=false"]


def test_a_default_run_scores_lpips_when_its_backbone_is_there(backbones, tmp_path, caplog):
    run = Run(resolve(compose(DEFAULT_RUN)), tmp_path)
    (summary,) = run.execute()
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [sorted(r["metrics"]) for r in rows] == [["lpips", "psnr", "ssim"]] * 2
    assert summary["metrics"]["lpips"]["n"] == 2 and summary["settings"]["metrics"] == ["psnr", "ssim", "lpips"]
    assert summary["metric_weights"]["lpips"]["file"] == str(backbones / "vgg16-397923af.pth")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_default_run_without_the_lpips_backbone_leaves_it_out_says_why_and_never_mixes(
    monkeypatch, tmp_path, caplog, planted_torch_home
):
    attempts = offline(monkeypatch, tmp_path)
    with caplog.at_level(logging.WARNING):
        (summary,) = Run(resolve(compose(DEFAULT_RUN)), tmp_path / "out").execute()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0] and len(attempts) == 1
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert warnings[0].startswith("lpips is left out of the default metrics: lpips needs the vgg weights")
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in warnings[0]
    assert f"put it at {folder / 'vgg16-397923af.pth'}" in warnings[0]
    assert summary["status"] == "complete" and summary["ok"] == 2
    assert summary["metrics"]["lpips"] == {"value": None, "reason": warnings[0]}
    assert summary["settings"]["metrics"] == ["psnr", "ssim"] and "lpips" not in summary["metric_weights"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [sorted(r["metrics"]) for r in rows] == [["psnr", "ssim"]] * 2
    # the backbone is there now: the rows without LPIPS are not continued with rows that have it
    monkeypatch.setenv("TORCH_HOME", str(planted_torch_home))
    with pytest.raises(ConfigError, match=r"made with metrics=\[psnr,ssim\] \(this run: metrics=\[psnr,ssim,lpips\]\)"):
        Run(resolve(compose(DEFAULT_RUN)), tmp_path / "out")


@pytest.mark.parametrize("overrides", [["metrics.names=[psnr,lpips]"], ["metrics=paper"], ["optimized_metric=lpips"]])
def test_lpips_asked_for_still_stops_the_run_without_its_backbone(overrides, monkeypatch, tmp_path):
    offline(monkeypatch, tmp_path)
    with pytest.raises(BackboneError, match="^lpips needs the vgg weights vgg16-397923af.pth"):
        Run(resolve(compose([*DEFAULT_RUN, *overrides])), tmp_path / "out")
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_the_cli_refuses_lpips_named_without_its_backbone_before_any_work(tmp_path):
    """The test session's TORCH_HOME is empty and downloads are refused (conftest): as on a machine offline."""
    proc = cli(*DEFAULT_RUN, "metrics.names=[psnr,lpips]", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: lpips needs the vgg weights vgg16-397923af.pth")
    assert not (tmp_path / "out").exists()


def test_the_fid_backbone_is_the_file_torchmetrics_fid_loads(monkeypatch, tmp_path):
    """`backbone_url("inception")` reads torch-fidelity's constant: it must be the URL that the Inception network
    of torchmetrics' FID fetches when given no weights file, and land where that fetch caches it."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe
    from torchmetrics.image.fid import NoTrainInceptionV3

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    fetched = []

    def record(url, *args, **kwargs):
        fetched.append(url)
        raise InterruptedError  # stop before any weights are needed

    monkeypatch.setattr(fe, "load_state_dict_from_url", record)
    with pytest.raises(InterruptedError), torch.device("meta"):
        NoTrainInceptionV3("inception-v3-compat", ["2048"])
    url, _ = backbones.backbone_url("inception")
    assert fetched == [url]
    hub = Path(torch.hub.get_dir()) / "checkpoints"  # where torch.hub.load_state_dict_from_url caches a URL
    assert backbones.backbone_path("inception") == hub / Path(url).name
