"""Every operator with every noise model: a 20-step DPS run on the Gaussian prior completes and is recorded."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from dps_exp.config import resolve
from dps_exp.run.experiment import Run
from tests.helpers import CONF_DIR, cli, compose

OPERATORS = sorted(p.stem for p in (CONF_DIR / "physics").glob("*.yaml"))
SMALL = {"inpaint_box": ["physics.box=12", "physics.margin=4"]}  # the paper's 128 px box needs 256 px images


def spec(physics, noise, *overrides):
    return resolve(
        compose(
            [
                "denoiser=gaussian",
                f"physics={physics}",
                f"physics.noise.kind={noise}",
                "data.size=32",
                "data.limit=2",
                "data.batch_size=2",
                "sampler.steps=20",
                "logger=none",
                "progress=false",
                *SMALL.get(physics, []),
                *overrides,
            ]
        )
    )


def test_every_paper_operator_has_a_config():
    assert set(OPERATORS) >= {
        "inpaint_random",
        "inpaint_random_paper",
        "inpaint_box",
        "super_resolution",
        "gaussian_blur",
        "motion_blur",
        "phase_retrieval",
        "denoise",
    }


@pytest.mark.parametrize("noise", ["gaussian", "poisson", "none"])
@pytest.mark.parametrize("physics", OPERATORS)
def test_dps_runs_with_every_operator_and_noise_model(physics, noise, tmp_path):
    (summary,) = Run(spec(physics, noise), tmp_path).execute()
    assert summary["status"] == "complete" and summary["ok"] == 2, summary
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["metrics"]["psnr"]) for r in rows)
    with Image.open(tmp_path / rows[0]["image"]) as panel:
        assert panel.size[1] >= 32
    saved = sorted(p.name for p in (tmp_path / "operators").iterdir())
    if physics.startswith(("inpaint", "gaussian", "motion")):  # masks and kernels, as tensors and PNGs
        name = "mask" if physics.startswith("inpaint") else "kernel"
        assert f"{rows[0]['key']}.pt" in saved and f"{rows[0]['key']}_{name}.png" in saved


def test_an_operator_is_selectable_from_the_command_line(tmp_path):
    proc = cli(
        "denoiser=gaussian",
        "physics=motion_blur",
        "physics/noise=poisson",
        "physics.intensity=0.3",
        "data.size=32",
        "data.limit=1",
        "sampler.steps=5",
        "logger=none",
        "progress=false",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (results,) = (tmp_path / "outputs").rglob("results.jsonl")
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["params"]["physics.noise.kind"] == "poisson" and row["point"]["physics.intensity"] == 0.3
