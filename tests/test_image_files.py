"""Image files as they come: 8- and 16-bit, grey, palette, alpha, CMYK all read as the same picture; names that are
not readable files (symlink loops, dangling symlinks, folders, pipes) are recorded as unreadable, not skipped."""

from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from dps_exp.data.datasets import FFHQVal
from dps_exp.data.images import ImageFolder, load_image
from dps_exp.errors import DataError
from tests.helpers import cli

H, W, SIZE = 24, 32, 16


def picture16() -> np.ndarray:
    """A smooth colour picture, (H, W, 3) uint16 using the full 16-bit range (not multiples of 257)."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 65535 // (W - 1), y * 65535 // (H - 1), (x + y) * 65535 // (H + W - 2)], -1).astype(np.uint16)


def to8(pixels16: np.ndarray) -> np.ndarray:
    return np.round(pixels16 / 257).astype(np.uint8)


def grey(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 1:2]  # any one channel will do as the grey picture


def write_png16(path, pixels: np.ndarray) -> None:
    """A 16-bit PNG written by hand (Pillow writes 16-bit grey only; torchvision's encode_png takes uint8 only):
    `pixels` (H, W, C) uint16 with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)."""
    height, width, channels = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def with_alpha(pixels: np.ndarray, alpha: int) -> np.ndarray:
    return np.concatenate([pixels, np.full_like(pixels[..., :1], alpha)], -1)


def pil(pixels: np.ndarray, mode: str) -> Image.Image:
    return Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels, mode)


def write(path, variant: str) -> tuple[np.ndarray, float]:
    """Write the picture as `variant` at `path`; returns its 8-bit RGB version (H, W, 3) and the tolerance."""
    p16 = picture16()
    rgb8, grey8 = to8(p16), to8(grey(p16))
    quantum = 0.5 / 255 + 1e-6  # 16 bits rounded to 8
    if variant == "L":
        pil(grey8, "L").save(path)
        return grey8.repeat(3, -1), 1e-6
    if variant == "I;16":
        Image.fromarray(grey(p16).squeeze(-1)).save(path)  # uint16 -> mode I;16
        assert Image.open(path).mode == "I;16"
        return grey8.repeat(3, -1), quantum
    if variant == "P":
        pil(rgb8, "RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path)
        return np.asarray(Image.open(path).convert("RGB")), 1e-6
    if variant == "RGBA":
        pil(with_alpha(rgb8, 90), "RGBA").save(path)
        return rgb8, 1e-6
    if variant == "LA":
        pil(with_alpha(grey8, 40), "LA").save(path)
        return grey8.repeat(3, -1), 1e-6
    if variant == "CMYK JPEG":
        pil(rgb8, "RGB").convert("CMYK").save(path, quality=100, subsampling=0)
        assert Image.open(path).mode == "CMYK"
        return rgb8, 3 / 255  # JPEG's loss
    colour = grey(p16) if variant == "LA 16" else p16
    write_png16(path, colour if variant == "RGB 16" else with_alpha(colour, 30000))
    return to8(colour).repeat(3 // colour.shape[-1], -1), quantum


@pytest.mark.parametrize("variant", ["L", "I;16", "P", "RGBA", "LA", "CMYK JPEG", "RGB 16", "RGBA 16", "LA 16"])
def test_every_pixel_format_reads_as_its_8_bit_rgb_picture(tmp_path, variant):
    path = tmp_path / ("image.jpg" if "JPEG" in variant else "image.png")
    rgb8, tolerance = write(path, variant)
    pil(rgb8, "RGB").save(tmp_path / "reference.png")
    image, reference = load_image(path, SIZE), load_image(tmp_path / "reference.png", SIZE)
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert (image - reference).abs().max() <= tolerance  # 16 bits / 255 made 97% of the pixels 1.0
    assert image.mean() < 0.75  # the picture, not a white sheet


def not_files(folder):
    """Names with image extensions that are no readable file, beside one real image; returns what each is."""
    folder.mkdir(parents=True, exist_ok=True)
    pil(to8(picture16()), "RGB").save(folder / "a_real.png")
    os.symlink("b_loop.png", folder / "b_loop.png")
    os.symlink("c_loop2.png", folder / "c_loop1.png")
    os.symlink("c_loop1.png", folder / "c_loop2.png")
    os.symlink("gone.png", folder / "d_dangling.png")
    (folder / "e_folder.jpg").mkdir()
    os.mkfifo(folder / "f_pipe.png")  # reading it would wait for ever
    return {
        "b_loop.png": "a symlink loop",
        "c_loop1.png": "a symlink loop",
        "c_loop2.png": "a symlink loop",
        "d_dangling.png": f"a dangling symlink (its target {folder.resolve() / 'gone.png'} does not exist)",
        "e_folder.jpg": "a folder, not an image file",
        "f_pipe.png": "not a regular file (a pipe, socket or device)",
    }


@pytest.mark.parametrize("source", ["folder", "ffhq_val"])
def test_names_that_are_no_readable_file_are_listed_and_fail_at_load_naming_why(tmp_path, source):
    root = tmp_path / "imgs"
    bad = not_files(root / "00000" if source == "ffhq_val" else root)
    data = ImageFolder(str(root), size=SIZE) if source == "folder" else FFHQVal(root=str(root), size=SIZE)
    items = data.items()
    assert [item.source.rsplit("/", 1)[1] for item in items] == ["a_real.png", *bad]  # none left out
    assert data.load(items[0]).shape == (3, SIZE, SIZE)
    for item in items[1:]:
        with pytest.raises(DataError) as err:
            data.load(item)
        assert str(err.value) == f"cannot read image {item.source}: {bad[item.source.rsplit('/', 1)[1]]}"


def test_a_symlink_loop_is_recorded_as_unreadable_by_the_cli(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    pil(to8(picture16()), "RGB").save(root / "a.png")
    os.symlink("b.png", root / "b.png")
    proc = cli("data=folder", f"data.root={root}", "data.size=16", "sampler.steps=2", "denoiser=gaussian",
               "logger=none", "progress=false", "hydra.run.dir=out", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["source"].rsplit("/", 1)[1]: r for r in map(json.loads, (tmp_path / "out/results.jsonl").open())}
    assert rows["a.png"]["status"] == "ok"
    assert rows["b.png"]["status"] == "unreadable"
    assert rows["b.png"]["error"] == f"cannot read image {root / 'b.png'}: a symlink loop"
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert (summary["ok"], summary["unreadable"]) == (1, 1)


def test_training_photographs_read_16_bit_files_too(tmp_path):
    from dps_exp.train.crops import PhotoCrops

    write_png16(tmp_path / "sixteen.png", picture16())
    pil(to8(picture16()), "RGB").save(tmp_path / "eight.png")
    crops = PhotoCrops(root=str(tmp_path), holdout=[], crop=8)
    assert (crops.load("sixteen.png") - crops.load("eight.png")).abs().max() <= 0.5 / 255 + 1e-6
