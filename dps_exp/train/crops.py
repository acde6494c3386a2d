"""Training data for a small image prior: random square crops of photographs, taken at several scales.

By default the photographs are the colour and grey photographs that ship with scikit-image (`skimage.data`,
the ones that load without a download) and matplotlib's `grace_hopper`; `root` points at a folder of your own
PNG/JPEG files instead. Whole images are held out for evaluation (by default the four photographs the demo and
`data=sample` use), so no evaluation crop comes from an image the prior saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from dps_exp.config import Range
from dps_exp.data.images import EXTENSIONS
from dps_exp.errors import DataError


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        if name.startswith("motorcycle_"):
            left, right, _ = skimage.data.stereo_motorcycle()
            return left if name.endswith("left") else right
        return getattr(skimage.data, name)()

    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook
    from PIL import Image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
        return np.asarray(im.convert("RGB"))


BUNDLED: dict[str, Callable[[], np.ndarray]] = {
    **{n: _skimage(n) for n in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right")},
    **{n: _skimage(n) for n in ("immunohistochemistry", "retina", "hubble_deep_field")},
    **{n: _skimage(n) for n in ("camera", "brick", "grass", "gravel", "moon", "coins")},  # grey: replicated
    "grace_hopper": _grace_hopper,
}
"""Natural photographs installed with scikit-image and matplotlib that load offline (no pooch download)."""

DEMO_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
"""The photographs behind dps_exp/assets (face, cat, coffee, rocket): held out by default."""


def load_photo(name: str) -> Tensor:
    """A bundled photograph as (3, H, W) float32 in [0, 1]; grey ones replicated to RGB."""
    if name not in BUNDLED:
        raise DataError(f"no bundled photograph {name!r}; choose from {', '.join(BUNDLED)}")
    arr = np.asarray(BUNDLED[name]())
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return torch.from_numpy(np.array(arr[..., :3])).permute(2, 0, 1).float() / 255.0


def downscale(img: Tensor, scale: float) -> Tensor:
    """Antialiased resize of (3, H, W) by `scale` (≤ 1)."""
    if scale == 1.0:
        return img
    h, w = img.shape[-2:]
    return TF.resize(img, [max(1, round(h * scale)), max(1, round(w * scale))], antialias=True).clamp(0, 1)


def keep(crop: Tensor, min_std: float, min_mean: float) -> bool:
    """Whether a [0, 1] crop has structure (std ≥ min_std) and is not near-black (mean ≥ min_mean)."""
    return bool(crop.std() >= min_std and crop.mean() >= min_mean)


class PhotoCrops:
    """Random crop×crop patches of photographs, in [-1, 1], drawn from a torch.Generator (reproducible).

    Each draw picks an image uniformly, then a scale from `scales` (the image is pre-resized by it, so small
    crops also see whole objects, not only texture), a position, and a horizontal flip; crops that are flat
    (std < min_std on the [0, 1] scale) or near-black (mean < min_mean) are drawn again.

    Args:
        root: a folder of PNG/JPEG files; null: the photographs bundled with scikit-image (astronaut, chelsea, coffee,
            rocket, motorcycle left/right, immunohistochemistry, retina, hubble_deep_field, and the grey camera, brick,
            grass, gravel, moon, coins, replicated to RGB) and matplotlib's grace_hopper
        images: which images (names, or file names under root); null: all but the held-out ones
        holdout: whole images kept out for evaluation (the four demo photographs)
        crop: crop side
        scales: each image is also used downscaled by these factors (antialiased), so crops hold objects, not only
            texture
        min_std: crops with a smaller std (on [0, 1]) are flat: drawn again
        min_mean: crops with a smaller mean are near-black: drawn again
        flip: random horizontal flips
    """

    def __init__(
        self,
        root: str | None = None,
        images: Sequence[str] | None = None,
        holdout: Sequence[str] = DEMO_PHOTOS,
        crop: Annotated[int, Range(4, 256)] = 32,
        scales: Sequence[Annotated[float, Range(0, 1, lo_open=True)]] = (1.0, 0.5, 0.25),
        min_std: Annotated[float, Range(0, 1)] = 0.04,
        min_mean: Annotated[float, Range(0, 1)] = 0.05,
        flip: bool = True,
    ):
        self.root, self.crop, self.scales = root, crop, [float(s) for s in scales]
        self.min_std, self.min_mean, self.flip = min_std, min_mean, flip
        available = self._available()
        unknown = [n for n in [*(images or []), *holdout] if n not in available]
        if unknown:
            where = f"{root} (name images and holdout by file name there)" if root else "the bundled photographs"
            raise DataError(f"train.data: no image {unknown[0]!r} in {where}")
        self.holdout = list(holdout)
        self.names = [n for n in (images or available) if n not in self.holdout]
        if not self.names:
            raise DataError("train.data: every image is held out; nothing is left to train on")
        self.pyramid = []  # (image name, scale, (3, h, w) tensor) for every scale the crop fits in
        for name in self.names:
            img = self.load(name)
            levels = [(name, s, im) for s in self.scales if min((im := downscale(img, s)).shape[-2:]) >= crop]
            if not levels:
                raise DataError(f"train.data: {name} is smaller than one {crop}×{crop} crop")
            self.pyramid.append(levels)

    def _available(self) -> list[str]:
        if self.root is None:
            return list(BUNDLED)
        folder = Path(self.root).expanduser()
        if not folder.is_dir():
            raise DataError(f"train.data.root={self.root!r} is not a folder")
        files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not files:
            raise DataError(f"no PNG or JPEG images in train.data.root={self.root!r}")
        return files

    def load(self, name: str) -> Tensor:
        if self.root is None:
            return load_photo(name)
        return _load_full(Path(self.root).expanduser() / name)

    def sample(self, batch: int, gen: torch.Generator, max_tries: int = 200) -> Tensor:
        """(batch, 3, crop, crop) in [-1, 1]; every random choice comes from `gen`."""
        out = []
        while len(out) < batch:
            for _ in range(max_tries):
                levels = self.pyramid[int(torch.randint(len(self.pyramid), (1,), generator=gen))]
                _, _, img = levels[int(torch.randint(len(levels), (1,), generator=gen))]
                h, w = img.shape[-2:]
                i = int(torch.randint(h - self.crop + 1, (1,), generator=gen))
                j = int(torch.randint(w - self.crop + 1, (1,), generator=gen))
                patch = img[:, i : i + self.crop, j : j + self.crop]
                flip = bool(torch.rand((), generator=gen) < 0.5)
                if keep(patch, self.min_std, self.min_mean):
                    break
            else:
                raise DataError(f"train.data: {max_tries} crops in a row were flat or near-black; relax the filters")
            out.append(patch.flip(-1) if self.flip and flip else patch)
        return torch.stack(out) * 2.0 - 1.0

    def describe(self) -> dict:
        """What the card records about the data."""
        return {
            "source": self.root or "bundled photographs (skimage.data, matplotlib grace_hopper)",
            "images": self.names,
            "holdout": self.holdout,
            "crop": self.crop,
            "scales": self.scales,
            "filters": {"min_std": self.min_std, "min_mean": self.min_mean, "scale": "[0, 1]"},
            "flip": self.flip,
        }


def _load_full(path: Path) -> Tensor:
    from torchvision.io import ImageReadMode, decode_image

    try:
        img = decode_image(str(path), mode=ImageReadMode.RGB)  # uint8, or uint16 from a 16-bit PNG
    except Exception as err:
        raise DataError(f"cannot read image {path}: {err}") from None
    return TF.to_dtype(img, torch.float32, scale=True)  # by the dtype's range: 16 bits / 255 would be white


def heldout_crops(
    names: Sequence[str] = DEMO_PHOTOS,
    per_image: int = 8,
    side: int = 128,
    crop: int = 32,
    seed: int = 0,
    min_std: float = 0.04,
    min_mean: float = 0.05,
) -> tuple[Tensor, list[str]]:
    """Evaluation crops: each held-out photograph resized so its shorter side is `side`, then `per_image`
    distinct random crop×crop patches passing the training filters. Returns (N, 3, crop, crop) in [0, 1]
    and a label per crop (`name@row,col`)."""
    gen = torch.Generator().manual_seed(seed)
    crops, labels = [], []
    for name in names:
        img = load_photo(name)
        img = downscale(img, side / min(img.shape[-2:]))
        h, w = img.shape[-2:]
        taken: set[tuple[int, int]] = set()
        while len(taken) < per_image:
            i = int(torch.randint(h - crop + 1, (1,), generator=gen))
            j = int(torch.randint(w - crop + 1, (1,), generator=gen))
            patch = img[:, i : i + crop, j : j + crop]
            if (i, j) not in taken and keep(patch, min_std, min_mean):
                taken.add((i, j))
                crops.append(patch)
                labels.append(f"{name}@{i},{j}")
    return torch.stack(crops), labels
