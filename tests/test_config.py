"""Bad config values stop the run before any work, with one line naming the key, value and range."""

from __future__ import annotations

import pytest

from dps_exp.config import resolve
from dps_exp.errors import ConfigError
from dps_exp.run.settings import validate
from tests.helpers import cli, compose

INVALID = {
    "physics.mask=1.5": "physics.mask=1.5 is not allowed: it must satisfy 0 < mask ≤ 1",
    "sampler.steps=0": "sampler.steps=0 is not allowed: it must satisfy 1 ≤ steps ≤ 1000",
    "sampler.steps=1001": "sampler.steps=1001 is not allowed: it must satisfy 1 ≤ steps ≤ 1000",
    "sampler.eta=-1": "sampler.eta=-1 is not allowed: it must satisfy 0 ≤ eta ≤ 1",
    "sampler.step_size=-0.1": "sampler.step_size=-0.1 is not allowed: it must satisfy 0 ≤ step_size",
    "physics.noise.sigma=-1": "physics.noise.sigma=-1 is not allowed: it must satisfy 0 ≤ sigma",
    "data=folder": "data.root is required: pass data.root=... (ImageFolder has no default for it)",
    "+foo=1": "foo is not a key of the top level; valid keys: seed, device, precision, compile, channels_last, "
    "samples, optimized_metric, progress, resume, sweep_jobs",
}


@pytest.mark.parametrize("override", list(INVALID))
def test_invalid_value_exits_with_one_line(override, tmp_path):
    proc = cli(override, "logger=none", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {INVALID[override]}"]
    assert "Traceback" not in proc.stdout + proc.stderr
    # refused before any work: no run directory is left behind (it would hold only Hydra's files and the log)
    assert not [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]


def test_misspelt_group_option_lists_the_valid_ones(tmp_path):
    proc = cli("physics=inpaint_rnd", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: physics=inpaint_rnd is not an option of physics (did you mean physics=inpaint_random?); options: "
        "denoise, gaussian_blur, inpaint_box, inpaint_random, inpaint_random_paper, motion_blur, phase_retrieval, "
        "super_resolution"
    ]
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("sampler.steps=abc", "sampler.steps='abc' is not allowed: it must be an integer"),
        ("sampler.eta=true", "sampler.eta=True is not allowed: it must be a number"),
        ("device=tpu", "device='tpu' is not allowed: it must be one of auto, cpu, cuda"),
        ("seed=-3", "seed=-3 is not allowed: it must satisfy 0 ≤ seed"),
        ("physics.noise.kind=laplace", "physics.noise.kind='laplace' is not allowed: it must be one of"),
        ("physics.noise.rate=0", "physics.noise.rate=0 is not allowed: it must satisfy 0 < rate"),
        ("physics=inpaint_box physics.margin=-1", "physics.margin=-1 is not allowed: it must satisfy 0 ≤ margin"),
        ("+physics.foo=1", "physics.foo is not a key of physics (RandomInpainting); valid keys: mask, noise"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed: it must satisfy 1 ≤ batch_size"),
        ("physics.mask=nan", "physics.mask=nan is not allowed: it must be a finite number"),  # passed any bound
        ("sampler.step_size=inf", "sampler.step_size=inf is not allowed: it must be a finite number"),
        ("physics.noise.sigma=-inf", "physics.noise.sigma=-inf is not allowed: it must be a finite number"),
        (
            "metrics.names=[psnr,fid2]",
            "metrics.names[1]='fid2' is not allowed: it must be one of psnr, ssim, lpips, fid",
        ),
    ],
)
def test_validation_messages(override, message):
    with pytest.raises(ConfigError) as err:
        validate(resolve(compose(override.split())))
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


NEEDS = {  # options with required keys
    "data=folder": ["data.root=/data"],
    "data=imagenet_val": ["data.root=/data", "data.file_list=/data/list.txt"],
    "data=prior_samples": ["denoiser=gmm"],  # draws ground truth from the prior: only exact priors can
}


def test_every_option_of_every_group_composes_and_validates():
    from tests.helpers import CONF_DIR

    # train/ configures scripts/train_prior.py (conf/train_prior.yaml), not a run
    for group_dir in sorted(p for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("experiment", "train")):
        for option in sorted(group_dir.glob("*.yaml")):
            overrides = [f"{group_dir.name}={option.stem}"]
            overrides += NEEDS.get(overrides[0], [])
            validate(resolve(compose(overrides)))


def test_every_training_option_composes_and_validates():
    from dps_exp.config import check_node
    from tests.helpers import CONF_DIR

    for option in sorted((CONF_DIR / "train").glob("*.yaml")):
        check_node(resolve(compose([f"train={option.stem}"], "train_prior"))["train"], "train")


def test_every_experiment_composes_and_validates():
    from tests.helpers import CONF_DIR

    for exp in sorted((CONF_DIR / "experiment").rglob("*.yaml")):
        name = exp.relative_to(CONF_DIR / "experiment").with_suffix("").as_posix()
        data = NEEDS["data=imagenet_val"] if "imagenet" in name else []
        validate(resolve(compose([f"experiment={name}", *data])))
