"""Test helpers: compose the real config tree in-process, and run the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from dps_exp.run.cli import CONF_DIR

ROOT = Path(__file__).resolve().parent.parent


def compose(overrides: list[str] | None = None, config_name: str = "config"):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides or [])


def cli(*args: str, cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m dps_exp.run ARGS` in `cwd`, offline, with W&B quiet."""
    env = {**os.environ, "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", **(env or {})}
    env.pop("WANDB_MODE", None)
    return subprocess.run(
        [sys.executable, "-m", "dps_exp.run", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def signal_after(calls: int, signum: int, method: str = "append") -> str:
    """Python code (for `python -c CODE ARGS`) that runs `dps_exp.run ARGS` and sends its own process `signum`
    right after the `calls`-th call of `Recorder.<method>` (`append`: a result row reached the disk;
    `write_summary`: a summary did): a signal at a fixed point, whatever the machine's speed."""
    return f"""
import os, runpy, sys
from dps_exp.run.recorder import Recorder
real, calls = Recorder.{method}, []
def then_signal(self, *args):
    real(self, *args)
    calls.append(args)
    if len(calls) == {calls}:
        os.kill(os.getpid(), {int(signum)})
Recorder.{method} = then_signal
sys.argv = ["dps_exp.run", *sys.argv[1:]]
runpy.run_module("dps_exp.run", run_name="__main__")
"""


def plant_backbones(torch_home: Path) -> Path:
    """Random metric backbones (LPIPS's VGG16 and AlexNet, FID's Inception) where torchmetrics looks for the
    real ones, under the exact file names, so LPIPS and FID run offline (their values mean nothing).

    Each weight is a strided view of a few random values (a Hankel matrix over output and input channels,
    constant over space), so the files are kB yet load strictly into the full networks. Returns the
    checkpoints folder."""
    from unittest import mock

    import torch
    import torchvision
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    from dps_exp.metrics.backbones import backbone_path

    def inception():
        with (
            mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: None),
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None),
        ):
            return fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])

    builders = {"vgg": torchvision.models.vgg16, "alex": torchvision.models.alexnet, "inception": inception}
    gen = torch.Generator().manual_seed(0)
    hub = torch_home / "hub"
    with mock.patch.object(torch.hub, "get_dir", lambda: str(hub)):
        for name, builder in builders.items():
            with torch.device("meta"):
                shapes = {k: (v.shape, v.dtype) for k, v in builder().state_dict().items()}
            state = {}
            for key, (shape, dtype) in shapes.items():
                if len(shape) in (2, 4):  # weights: a random Hankel matrix over (out, in), constant over space
                    space = shape[2:].numel() if len(shape) == 4 else 1
                    scale = (2 / shape[1]) ** 0.5 / space  # He gain, spatially smooth inputs summed over space
                    values = torch.randn(shape[0] + shape[1] - 1, generator=gen) * scale
                    state[key] = values.as_strided(shape, (1, 1, 0, 0)[: len(shape)])
                else:  # norms are the identity; biases and counters zero
                    one = key.endswith(("running_var", "weight")) and dtype.is_floating_point
                    value = torch.ones(1) if one else torch.zeros(1, dtype=dtype)
                    state[key] = value.reshape([1] * len(shape)).expand(shape)
            path = backbone_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, path)
    return hub / "checkpoints"
