"""Draw one picture per forward model: the bundled face, its measurement and the drawn operator, with the
config's parameters as a title, into docs/operators/<option>.png.

    python scripts/operator_gallery.py [--out docs/operators] [--seed 0] [physics options ...]

Each option is composed from conf/physics/ exactly as a run would (its paper settings and noise), and its
random parts are drawn from image 0's streams of the given run seed, as the Run draws them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms.v2.functional import to_pil_image

from dps_exp import batch
from dps_exp.config import build
from dps_exp.data.images import SampleImages
from dps_exp.run.cli import CONF_DIR, compose
from dps_exp.run.engine import to_signed, to_unit
from dps_exp.run.points import flatten

SIZE = 256
TITLE = 46
LABEL = 22


def physics_config(option: str, seed: int) -> dict:
    return compose([f"physics={option}", f"seed={seed}", "logger=none"])["physics"]


def state_picture(name: str, v: torch.Tensor) -> Image.Image:
    """A mask or kernel (1, h, w) as a SIZE × SIZE grey picture, scaled to its maximum, nearest-neighbour."""
    v = v.float() / v.max().clamp_min(1e-12)
    scale = max(1, SIZE // max(v.shape[-2:]))
    v = F.interpolate(v[None], scale_factor=scale, mode="nearest")[0]
    canvas = torch.zeros(1, SIZE, SIZE)
    top, left = (SIZE - v.shape[-2]) // 2, (SIZE - v.shape[-1]) // 2
    canvas[:, top : top + v.shape[-2], left : left + v.shape[-1]] = v
    return to_pil_image(canvas.expand(3, -1, -1))


def describe(option: str, spec: dict) -> str:
    params = flatten({k: v for k, v in spec.items() if k != "noise"})
    noise = spec["noise"]
    level = {"gaussian": f"sigma={noise['sigma']}", "poisson": f"rate={noise['rate']}", "none": ""}[noise["kind"]]
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"physics={option}   {shown}\nnoise={noise['kind']} {level} (on the [-1, 1] scale)".rstrip()


def render(option: str, seed: int, out: Path) -> Path:
    spec = physics_config(option, seed)
    x = to_signed(SampleImages(size=SIZE).load(SampleImages(size=SIZE).items()[0]))[None]
    physics = build(spec).draw(x.shape, batch.generators([seed], [0], "operator"), x.device)
    y = physics.measure(x, batch.generators([seed], [0], "measurement"))
    panels = [("image x", to_pil_image(to_unit(x[0]))), (f"measurement y {tuple(y.shape[-2:])}", None)]
    panels[1] = (panels[1][0], to_pil_image(to_unit(physics.to_image(y)[0])))
    for name, v in physics.state().items():
        panels.append((f"{name} {tuple(v.shape[-2:])}", state_picture(name, v[0].cpu())))

    font = ImageFont.load_default(size=14)
    sheet = Image.new("RGB", (len(panels) * (SIZE + 8) + 8, TITLE + SIZE + LABEL + 8), "white")
    draw = ImageDraw.Draw(sheet)
    draw.multiline_text((8, 6), describe(option, spec), fill="black", font=font, spacing=4)
    for i, (label, picture) in enumerate(panels):
        left = 8 + i * (SIZE + 8)
        sheet.paste(picture, (left, TITLE))
        draw.rectangle((left - 1, TITLE - 1, left + SIZE, TITLE + SIZE), outline="grey")
        draw.text((left, TITLE + SIZE + 4), label, fill="black", font=font)
    path = out / f"{option}.png"
    sheet.quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)  # small enough to commit
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("options", nargs="*", help="physics options (default: every file in conf/physics/)")
    parser.add_argument("--out", type=Path, default=Path("docs/operators"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    known = sorted(p.stem for p in (CONF_DIR / "physics").glob("*.yaml"))
    if unknown := [o for o in args.options if o not in known]:
        parser.error(f"no physics option {unknown[0]!r}: the options are {', '.join(known)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for option in args.options or known:
        path = render(option, args.seed, args.out)
        print(f"{path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
