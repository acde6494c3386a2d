"""Test helpers: compose the real config tree in-process, and run the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from dps_exp.run import CONF_DIR

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
