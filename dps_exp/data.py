"""Where images come from: the bundled samples or a folder, as (3, size, size) tensors in [0, 1]."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from torch import Tensor
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from dps_exp.config import Range
from dps_exp.errors import ConfigError, DataError

ASSETS = Path(__file__).parent / "assets"
EXTENSIONS = (".png", ".jpg", ".jpeg")
SAMPLE_ORDER = ("face.png", "cat.png", "coffee.png", "rocket.png")


@dataclass(frozen=True)
class Item:
    index: int
    """Position in the (unsharded) list; seeds derive from it, so it never changes with batching."""
    source: str
    """The file the image comes from."""


def load_image(path: Path, size: int) -> Tensor:
    """An image file as RGB (grey is replicated, alpha dropped), centre-cropped to a square and resized
    with antialiasing to size×size; float32 in [0, 1], shape (3, size, size)."""
    try:
        img = decode_image(str(path), mode=ImageReadMode.RGB)
    except Exception as err:
        reason = re.sub(r"^.*\.cpp:\d+, ", "", str(err).splitlines()[0])  # torchvision prefixes its C++ source line
        raise DataError(f"cannot read image {path}: {reason}") from None
    side = min(img.shape[-2:])
    img = TF.center_crop(img, [side, side]).float() / 255.0
    if side != size:
        img = TF.resize(img, [size, size], antialias=True)
    return img.clamp(0.0, 1.0)


class Images:
    """A fixed, ordered list of image files. `limit` keeps the first N; `batch_size` bounds how many
    samples (images × sweep points) go through the sampler together; `shard`/`num_shards` keep every
    num_shards-th image from `shard` on (indices, hence seeds, stay those of the whole list). `start` is the
    index of the first file, when the list is a slice of a longer one.

    Args:
        size: images are centre-cropped to a square and resized to size × size
        batch_size: samples (images × sweep points) per sampler call
        limit: keep the first N images (null: all)
        shard: this job runs the images whose index ≡ shard (mod num_shards); merge shards with `scripts/merge_runs.py`
        num_shards: how many jobs the images are split over (see `shard`)
    """

    def __init__(
        self,
        files: list[Path],
        size: int,
        batch_size: int,
        limit: int | None,
        shard: int,
        num_shards: int,
        start: int = 0,
    ):
        if not files:
            raise DataError("no images to run on")
        if shard >= num_shards:
            raise ConfigError(f"data.shard={shard} is not allowed: it must be below data.num_shards={num_shards}")
        self.files = files[:limit] if limit else files
        self.size = size
        self.batch_size = batch_size
        self.shard, self.num_shards = shard, num_shards
        self.start = start

    def items(self) -> list[Item]:
        indexed = enumerate(self.files, start=self.start)
        return [Item(i, str(f)) for i, f in indexed if i % self.num_shards == self.shard]

    def load(self, item: Item) -> Tensor:
        return load_image(Path(item.source), self.size)


class SampleImages(Images):
    """Four photographs bundled with the package (face, cat, coffee, rocket; dps_exp/assets/SOURCES.md)."""

    def __init__(
        self,
        size: Annotated[int, Range(8, 1024)] = 256,
        batch_size: Annotated[int, Range(1, None)] = 4,
        limit: Annotated[int, Range(1, None)] | None = None,
        shard: Annotated[int, Range(0, None)] = 0,
        num_shards: Annotated[int, Range(1, None)] = 1,
    ):
        super().__init__([ASSETS / name for name in SAMPLE_ORDER], size, batch_size, limit, shard, num_shards)


class ImageFolder(Images):
    """Every PNG/JPEG file directly in `root`, in sorted order; grey images are replicated to RGB, alpha is dropped,
    unreadable files are recorded by name (`status: unreadable`) and skipped; running again into the directory tries
    them again (mended, an image's new row replaces the old one).

    Args:
        root: the folder
    """

    def __init__(
        self,
        root: str,
        size: Annotated[int, Range(8, 1024)] = 256,
        batch_size: Annotated[int, Range(1, None)] = 4,
        limit: Annotated[int, Range(1, None)] | None = None,
        shard: Annotated[int, Range(0, None)] = 0,
        num_shards: Annotated[int, Range(1, None)] = 1,
    ):
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise DataError(f"data.root={root!r} is not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not files:
            raise DataError(f"no PNG or JPEG images in data.root={root!r}")
        super().__init__(files, size, batch_size, limit, shard, num_shards)
