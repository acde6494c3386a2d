"""The package installs like one: a wheel carries the config tree and the console scripts, and a fresh
environment holding only that wheel (plus the already-installed dependencies) runs the demo from an unrelated
directory. Offline: the wheel is built without build isolation, the dependencies are this environment's."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

COMMANDS = ("dps-run", "dps-table", "dps-sweep-report", "dps-merge", "dps-train-prior")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy of the checkout's files, so no build/ left over from an earlier layout slips in
    source = out / "source"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()  # fmt: skip
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", str(source),
         "-w", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (found,) = out.glob("dps_exp-*.whl")
    return found


def test_the_wheel_carries_the_configs_and_the_console_scripts(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    conf = sorted(n.removeprefix("dps_exp/conf/") for n in names if n.startswith("dps_exp/conf/"))
    on_disk = sorted(p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.y*ml"))
    assert set(on_disk) <= set(conf) and "config.yaml" in conf and "experiment/paper/ffhq_sr4.yaml" in conf
    assert "dps_exp/analysis/paper_values.yaml" in names and "dps_exp/assets/natural32.safetensors" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{c} =" in scripts for c in COMMANDS)


def test_a_fresh_install_of_the_wheel_runs_the_demo_from_anywhere(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    purelib = Path(
        subprocess.run([env_dir / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       capture_output=True, text=True, check=True).stdout.strip()
    )  # fmt: skip
    # the dependencies come from this environment's site-packages, listed after the venv's own (a .pth file there
    # is not processed, so this checkout's editable install stays invisible)
    (purelib / "zz_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "--no-deps",
         "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WANDB_MODE")}
    env |= {"WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}
    args = ["experiment=demo", "sampler.steps=3", "data.limit=1", "logger=none", "progress=false", "hydra.run.dir=out"]
    proc = subprocess.run([env_dir / "bin" / "dps-run", *args], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    where = subprocess.run([env_dir / "bin" / "python", "-c", "import dps_exp; print(dps_exp.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True)  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout  # the wheel's copy ran, not the checkout
    summary = json.loads((elsewhere / "out" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["ok"] == 1
    assert (elsewhere / "out" / "run.log").is_file()
    # the sweeper plugin is found in the installed package too: two points, packed into one job
    sweep = ["-m", *args[:-1], "sampler.eta=0,1", "hydra.sweep.dir=sweep"]
    proc = subprocess.run([env_dir / "bin" / "dps-run", *sweep], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [json.loads((elsewhere / "sweep" / k / "summary.json").read_text())["status"] for k in "01"] == [
        "complete"
    ] * 2
    assert list((elsewhere / "sweep").glob("packed-*"))


def test_hydra_finds_the_sweeper_plugin_in_this_install():
    """An editable install maps hydra_plugins as a namespace package, or Hydra's discovery misses the sweeper."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = [p.__name__ for p in Plugins.instance().discover(Sweeper)]
    assert "VectorizedSweeper" in names
