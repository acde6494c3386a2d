"""The paper's experiments: each composes with the paper's protocol and step sizes, and a 2-image, 5-step run of
each (Gaussian prior, random metric backbones) goes through measuring, sampling, LPIPS and FID to its summary."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from dps_exp import ASSETS
from dps_exp.config import resolve
from dps_exp.run.experiment import Run
from dps_exp.run.settings import validate
from tests.helpers import CONF_DIR, cli, compose

PAPER = sorted(p.stem for p in (CONF_DIR / "experiment" / "paper").glob("*.yaml") if not p.stem.startswith("_"))
TASKS = [name for name in PAPER if not name.endswith("_zeta")]

# (official code's scale, paper's ζ'), dps_facts.md §2: our step_size is the scale, or 2ζ'.
STEP_SIZES = {
    "ffhq_sr4": (0.3, 1.0),
    "ffhq_inpaint_box": (0.5, 1.0),
    "ffhq_inpaint_random": (0.5, 1.0),
    "ffhq_deblur_gauss": (0.3, 1.0),
    "ffhq_deblur_motion": (0.3, 1.0),
    "ffhq_phase_retrieval": (1.0, 0.4),
    "imagenet_sr4": (0.3, 1.0),
    "imagenet_inpaint_box": (0.5, 1.0),
    "imagenet_inpaint_random": (0.5, 1.0),
    "imagenet_deblur_gauss": (0.3, 0.4),
    "imagenet_deblur_motion": (0.3, 0.6),
}
OPERATORS = {
    "sr4": ("SuperResolution", {"factor": 4}),
    "inpaint_box": ("BoxInpainting", {"box": 128, "margin": 16, "placement": "random"}),
    "inpaint_random": ("RandomInpainting", {"mask": 0.08}),
    "deblur_gauss": ("GaussianBlur", {"std": 3.0, "kernel_size": 61}),
    "deblur_motion": ("MotionBlur", {"intensity": 0.5, "kernel_size": 61, "kernel_per": "run"}),
    "phase_retrieval": ("PhaseRetrieval", {"oversample": 2.0}),
}
SMALL = {"inpaint_box": ["physics.box=12", "physics.margin=4"]}  # the paper's 128 px box needs 256 px images


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory):
    """Three FFHQ-named images, and an ImageNet-like folder with a file list in a non-sorted order."""
    root = tmp_path_factory.mktemp("data")
    for i, name in enumerate(["face.png", "cat.png", "coffee.png"]):
        (root / "ffhq" / f"{i:02d}000").mkdir(parents=True)
        shutil.copy(ASSETS / name, root / "ffhq" / f"{i:02d}000" / f"{i:05d}.png")
        (root / "imagenet" / "val").mkdir(parents=True, exist_ok=True)
        shutil.copy(ASSETS / name, root / "imagenet" / "val" / f"img_{2 - i}.png")
    (root / "imagenet" / "list.txt").write_text("# three images\nval/img_0.png\nval/img_2.png\nval/img_1.png\n")
    return root


def data_overrides(name: str, root) -> list[str]:
    if name.startswith("imagenet"):
        return [f"data.root={root / 'imagenet'}", f"data.file_list={root / 'imagenet' / 'list.txt'}"]
    return [f"data.root={root / 'ffhq'}"] if name.startswith("ffhq") else []


@pytest.mark.parametrize("name", PAPER)
def test_every_paper_experiment_composes_with_the_paper_protocol(name, image_dirs):
    spec = resolve(compose([f"experiment=paper/{name}", *data_overrides(name, image_dirs)]))
    validate(spec)
    dataset, task = name.removesuffix("_zeta").split("_", 1)
    assert spec["denoiser"]["architecture"] == dataset and spec["denoiser"]["_target_"].endswith("PretrainedADM")
    assert spec["data"]["_target_"].endswith({"ffhq": "FFHQVal", "imagenet": "ImageNetVal"}[dataset])
    assert spec["data"]["size"] == 256 and spec["metrics"]["names"] == ["psnr", "ssim", "lpips", "fid"]
    assert spec["metrics"]["lpips_net"] == "vgg" and spec["metrics"]["fid_features"] == 2048
    assert {k: spec["sampler"][k] for k in ("steps", "variance", "eta")} == {
        "steps": 1000,
        "variance": "learned",
        "eta": 1.0,
    }
    assert spec["physics"]["noise"]["kind"] == "gaussian" and spec["physics"]["noise"]["sigma"] == 0.05
    operator, settings = OPERATORS[task]
    assert spec["physics"]["_target_"].endswith(operator)
    assert {k: spec["physics"][k] for k in settings} == settings
    scale, zeta = STEP_SIZES[name.removesuffix("_zeta")]
    assert spec["sampler"]["step_size"] == pytest.approx(2 * zeta if name.endswith("_zeta") else scale)
    assert spec["seed"] == ([0, 1, 2, 3] if task == "phase_retrieval" else 0)  # best of 4: four seeds
    text = (CONF_DIR / "experiment" / "paper" / f"{name}.yaml").read_text()
    assert ("PAPER's step size" if name.endswith("_zeta") else "OFFICIAL CODE's `scale`") in text


def test_the_tutorial_experiment_is_what_the_tutorial_code_runs():
    spec = resolve(compose(["experiment=tutorial"]))
    validate(spec)
    assert spec["denoiser"]["architecture"] == "ffhq"
    assert spec["data"]["_target_"].endswith("SampleImages") and (spec["data"]["size"], spec["data"]["limit"]) == (
        64,
        1,
    )
    assert spec["physics"]["_target_"].endswith("RandomInpainting") and spec["physics"]["mask"] == 0.1
    assert spec["physics"]["noise"]["kind"] == "none"  # sigma = 12.75/255 is defined but never given to the physics
    sampler = spec["sampler"]
    assert (sampler["steps"], sampler["eta"], sampler["variance"]) == (200, 1.0, "eta")
    assert sampler["step_size"] == pytest.approx(1 / math.sqrt(2))


def small(name: str, root, lpips_net: str = "alex") -> list[str]:
    """A 2-image, 5-step run on 32 px images with the Gaussian prior (which has no learned variance)."""
    group = "paper/" if name != "tutorial" else ""
    task = name.split("_", 1)[-1]
    return [f"experiment={group}{name}", *data_overrides(name, root), "denoiser=gaussian", "sampler.variance=eta",
            "data.size=32", "data.limit=2", "data.batch_size=8", "sampler.steps=5", "logger=none", "progress=false",
            "metrics=paper", "metrics.fid_features=64", f"metrics.lpips_net={lpips_net}",
            *SMALL.get(task, [])]  # fmt: skip


@pytest.mark.parametrize("name", [*TASKS, "tutorial"])
def test_a_small_run_of_each_paper_experiment_completes(name, image_dirs, backbones, tmp_path):
    net = "vgg" if name == "ffhq_sr4" else "alex"  # VGG (the paper's) once: building it takes seconds
    summaries = Run(resolve(compose(small(name, image_dirs, net))), tmp_path).execute()
    assert len(summaries) == (4 if name.endswith("phase_retrieval") else 1)
    for summary in summaries:
        out = tmp_path if len(summaries) == 1 else tmp_path / f"point-{summary['point']['seed']}"
        assert summary["status"] == "complete" and summary["ok"] == 2, summary
        assert {m: summary["metrics"][m]["n"] for m in ("psnr", "ssim", "lpips", "fid")} == dict.fromkeys(
            ("psnr", "ssim", "lpips", "fid"), 2
        )
        assert math.isfinite(summary["metrics"]["fid"]["value"]) and summary["metrics"]["lpips"]["mean"] > 0
        assert summary["metric_weights"]["lpips"]["backbone"] == net
        assert summary["metric_weights"]["fid"]["file"].endswith("weights-inception-2015-12-05-6726825d.pth")
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert all((out / r["reconstruction"]).is_file() for r in rows)
        listed = (out / "images.txt").read_text().splitlines()
        assert listed == [r["source"] for r in rows]
    if name.startswith("imagenet"):  # the file list's order, not the sorted one
        assert [s.rsplit("/", 1)[1] for s in listed] == ["img_0.png", "img_2.png"]
    elif name.startswith("ffhq"):
        assert [s.rsplit("/", 1)[1] for s in listed] == ["00000.png", "00001.png"]


def test_fid_of_a_single_image_is_recorded_as_undefined(image_dirs, backbones, tmp_path):
    overrides = [*small("ffhq_sr4", image_dirs), "data.limit=1"]
    (summary,) = Run(resolve(compose(overrides)), tmp_path).execute()
    assert summary["status"] == "complete"
    assert summary["metrics"]["fid"] == {"value": None, "n": 1, "reason": "FID needs at least 2 images, the set has 1"}


def test_points_an_experiment_lists_land_inside_their_sweep_job(tmp_path):
    """Phase retrieval's four seeds in a sweep: the sweeper runs each step count as one job, the config's list
    makes its four points, each in `point-K/` inside its job's folder."""
    sweep = tmp_path / "sweep"
    proc = cli(
        "-m", "experiment=paper/ffhq_phase_retrieval", "denoiser=gaussian", "data=sample", "data.size=32",
        "data.limit=1", "sampler.steps=2,3", "sampler.variance=eta", "metrics=default", "logger=none",
        "progress=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    dirs = sorted(p.parent for p in sweep.rglob("results.jsonl"))
    assert dirs == [sweep / str(job) / f"point-{k}" for job in (0, 1) for k in range(4)]
    assert (sweep / "1" / ".hydra" / "overrides.yaml").exists()
