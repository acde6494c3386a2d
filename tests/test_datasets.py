"""The paper's data sets: FFHQ from a folder or a (fake, offline) Hugging Face dataset cache, ImageNet by list."""

from __future__ import annotations

import os
import shutil

import huggingface_hub.constants
import pytest
import torch

from dps_exp.data.datasets import FFHQVal, ImageNetVal
from dps_exp.errors import DataError
from tests.helpers import ROOT

FACE = ROOT / "dps_exp" / "assets" / "face.png"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def ffhq_folder(root, n=6):
    """FFHQ's layout: 00000/00000.png … in folders of 1000 (here of 2), plus a file that is not an image."""
    for i in range(n):
        (root / f"{i // 2 * 1000:05d}").mkdir(parents=True, exist_ok=True)
        shutil.copy(FACE, root / f"{i // 2 * 1000:05d}" / f"{i:05d}.png")
    (root / "LICENSE.txt").write_text("not an image")
    return root


def names(data):
    return [(item.index, item.source.rsplit("/", 1)[1]) for item in data.items()]


def test_ffhq_from_a_folder_takes_images_first_to_first_plus_count_in_name_order(tmp_path):
    root = ffhq_folder(tmp_path / "ffhq")
    assert names(FFHQVal(root=str(root), count=3)) == [(0, "00000.png"), (1, "00001.png"), (2, "00002.png")]
    later = FFHQVal(root=str(root), first=2, count=3, limit=2)
    assert names(later) == [(2, "00002.png"), (3, "00003.png")]  # indices (hence seeds) of the whole list
    sharded = FFHQVal(root=str(root), first=1, count=4, shard=1, num_shards=2)
    assert names(sharded) == [(1, "00001.png"), (3, "00003.png")]
    image = FFHQVal(root=str(root), size=32).load(later.items()[0])
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1


def test_ffhq_needs_exactly_one_source(tmp_path):
    with pytest.raises(DataError, match="exactly one of data.root"):
        FFHQVal()
    with pytest.raises(DataError, match="exactly one of data.root"):
        FFHQVal(root=str(tmp_path), hub_repo="someone/ffhq")
    with pytest.raises(DataError, match="is not a folder"):
        FFHQVal(root=str(tmp_path / "missing"))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def plant_dataset(cache, repo: str, n: int):
    """A Hugging Face dataset repository in the cache layout: blobs named by hash, snapshot symlinks."""
    base = cache / f"datasets--{repo.replace('/', '--')}"
    (base / "blobs").mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(COMMIT)
    data = FACE.read_bytes()
    (base / "blobs" / "facehash").write_bytes(data)
    for i in range(n):
        target = base / "snapshots" / COMMIT / "images" / f"{i:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("../../../blobs/facehash", target)
    return base / "snapshots" / COMMIT


def test_ffhq_from_a_hub_dataset_in_the_cache_loads_offline(hub_cache):
    snapshot = plant_dataset(hub_cache, "someone/ffhq-val", 3)
    data = FFHQVal(hub_repo="someone/ffhq-val", count=2, size=16)
    assert names(data) == [(0, "00000.png"), (1, "00001.png")]
    assert all(item.source.startswith(str(snapshot)) for item in data.items())  # the commit is in the path
    assert data.load(data.items()[1]).shape == (3, 16, 16)


def test_a_hub_dataset_that_cannot_be_had_says_how_to_get_it(hub_cache):
    with pytest.raises(DataError) as err:
        FFHQVal(hub_repo="someone/ffhq-val", hub_patterns=["images/00000/*"])
    message = str(err.value)
    assert message.startswith("cannot get the dataset someone/ffhq-val from the Hugging Face Hub")
    assert "hf download someone/ffhq-val --repo-type dataset --include 'images/00000/*'" in message
    assert "data.root=PATH" in message


def test_imagenet_takes_the_file_list_in_its_order_and_names_a_missing_file(tmp_path):
    for name in ("b.png", "a.png", "c.png"):
        (tmp_path / "val").mkdir(exist_ok=True)
        shutil.copy(FACE, tmp_path / "val" / name)
    listing = tmp_path / "list.txt"
    listing.write_text("# the paper's images\nval/c.png\n\nval/a.png\nval/b.png\n")
    data = ImageNetVal(root=str(tmp_path), file_list=str(listing), size=16)
    assert names(data) == [(0, "c.png"), (1, "a.png"), (2, "b.png")]
    listing.write_text("val/a.png\nval/gone.png\n")
    with pytest.raises(DataError, match=r"data.file_list names 1 file\(s\) not in data.root=.*val/gone\.png"):
        ImageNetVal(root=str(tmp_path), file_list=str(listing))
    with pytest.raises(DataError, match="is not a file"):
        ImageNetVal(root=str(tmp_path), file_list=str(tmp_path / "nope.txt"))
