"""Where images come from: the bundled samples or a folder, as (3, size, size) tensors in [0, 1]."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Annotated

import torch
from torch import Tensor

from dps_exp import ASSETS
from dps_exp.config import Range
from dps_exp.data.base import BatchSize, DataSource, Item
from dps_exp.errors import ConfigError, DataError

EXTENSIONS = (".png", ".jpg", ".jpeg")
SAMPLE_ORDER = ("face.png", "cat.png", "coffee.png", "rocket.png")


def not_a_file(path: Path) -> str | None:
    """Why `path` is not a regular file that can be read (a symlink loop, a dangling symlink, a folder, a pipe,
    ...), or None. Checked before decoding: decoding a FIFO named *.png would wait for ever."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symlink loop"
        if path.is_symlink():
            return f"a dangling symlink (its target {os.path.realpath(path)} does not exist)"
        return err.strerror or type(err).__name__
    if stat.S_ISDIR(mode):
        return "a folder, not an image file"
    return None if stat.S_ISREG(mode) else "not a regular file (a pipe, socket or device)"


def load_image(path: Path, size: int) -> Tensor:
    """An image file (8- or 16-bit; grey, palette, RGB, with or without alpha; CMYK JPEG) as RGB (grey is
    replicated, alpha dropped), centre-cropped to a square and resized with antialiasing to size×size; float32
    in [0, 1], shape (3, size, size). Raises DataError naming the file and the reason when it cannot be read."""
    from torchvision.io import ImageReadMode, decode_image  # here: a config error is said before it loads (seconds)
    from torchvision.transforms.v2 import functional as TF

    if reason := not_a_file(path):
        raise DataError(f"cannot read image {path}: {reason}")
    try:
        img = decode_image(str(path), mode=ImageReadMode.RGB)
    except Exception as err:
        reason = re.sub(r"^.*\.cpp:\d+, ", "", str(err).splitlines()[0])  # torchvision prefixes its C++ source line
        raise DataError(f"cannot read image {path}: {reason}") from None
    side = min(img.shape[-2:])
    # Scaled by the decoded dtype's range: uint8 by 255, uint16 (16-bit PNG) by 65535 (/255 made it white).
    img = TF.to_dtype(TF.center_crop(img, [side, side]), torch.float32, scale=True)
    if side != size:
        img = TF.resize(img, [size, size], antialias=True)
    return img.clamp(0.0, 1.0)


class Images(DataSource):
    """A fixed, ordered list of image files. `limit` keeps the first N; `batch_size` bounds how many
    samples (images × sweep points) go through the sampler together; `shard`/`num_shards` keep every
    num_shards-th image from `shard` on (indices, hence seeds, stay those of the whole list). `start` is the
    index of the first file, when the list is a slice of a longer one.

    Args:
        size: images are centre-cropped to a square and resized to size × size
        batch_size: samples (images × sweep points × draws) per sampler call; `auto`: on CUDA the most that fit the
            free memory (probed once per process; halved after running out of memory), on CPUs 4 at 256×256 and more
            for smaller images, up to 16
        limit: keep the first N images (null: all)
        shard: this job runs the images whose index ≡ shard (mod num_shards); merge shards with `scripts/merge_runs.py`
        num_shards: how many jobs the images are split over (see `shard`)
    """

    def __init__(
        self,
        files: list[Path],
        size: int,
        batch_size: int | str,
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
        batch_size: BatchSize = "auto",
        limit: Annotated[int, Range(1, None)] | None = None,
        shard: Annotated[int, Range(0, None)] = 0,
        num_shards: Annotated[int, Range(1, None)] = 1,
    ):
        super().__init__([ASSETS / name for name in SAMPLE_ORDER], size, batch_size, limit, shard, num_shards)


class ImageFolder(Images):
    """Everything named *.png/*.jpg/*.jpeg directly in `root`, in sorted order; 8- and 16-bit files are each read at
    their own range, grey and palette images become RGB, alpha is dropped. What is not a readable image file
    (a symlink loop, a dangling symlink, a folder, a corrupt file) stays in the list and is recorded as unreadable
    when loaded, rather than left out unsaid; running again into the directory tries it again (mended, an image's
    new row replaces the old one).

    Args:
        root: the folder
    """

    def __init__(
        self,
        root: str,
        size: Annotated[int, Range(8, 1024)] = 256,
        batch_size: BatchSize = "auto",
        limit: Annotated[int, Range(1, None)] | None = None,
        shard: Annotated[int, Range(0, None)] = 0,
        num_shards: Annotated[int, Range(1, None)] = 1,
    ):
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise DataError(f"data.root={root!r} is not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
        if not files:
            raise DataError(f"no PNG or JPEG images in data.root={root!r}")
        super().__init__(files, size, batch_size, limit, shard, num_shards)
