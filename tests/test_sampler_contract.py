"""The sampler contract's proof: a second sampler, defined here only (one class and one config node, found through
Hydra's search path), runs end to end through the CLI with no change to the package: checked before any work,
packed in a sweep, recorded with its own NFE and its own divergence advice."""

from __future__ import annotations

import json
import os
from typing import Annotated

import torch

from dps_exp.batch import per_sample
from dps_exp.config import PER_SAMPLE, Range
from dps_exp.errors import ConfigError
from dps_exp.physics.base import LinearPhysics
from dps_exp.samplers.base import Sampler, SampleResult
from tests.helpers import ROOT, cli

T = 200


class OneStep(Sampler):
    """A toy: noise the pseudo-inverse A⁺y to timestep 200, denoise it once, and mix x̂0 with A⁺y.

    Args:
        strength: the weight of the prior's x̂0 against A⁺y
    """

    divergence_hint = "a toy: it never diverges"

    def __init__(self, strength: Annotated[float, Range(0, 1), PER_SAMPLE] = 0.5):
        self.strength = strength

    def check(self, prior, physics) -> None:
        if not isinstance(physics, LinearPhysics):
            raise ConfigError(
                f"sampler=one_step needs a linear operator (it starts from A⁺y), not {type(physics).__name__}"
            )

    def sample(self, y, physics, prior, schedule, noise, callback=None, progress=False) -> SampleResult:
        start = physics.init(y)
        ab = schedule.alpha_bar(torch.tensor([T], device=y.device)).float()
        t = torch.full((y.shape[0],), T, device=y.device)
        x0 = prior(ab.sqrt() * start + (1 - ab).sqrt() * noise(), t).x0.clamp(-1, 1)
        s = per_sample(self.strength, start)
        x = (1 - s) * start + s * x0
        return SampleResult(x=x, diverged_at=torch.full((y.shape[0],), -1, device=y.device), nfe=1)


def conf_dir(tmp_path):
    folder = tmp_path / "conf" / "sampler"
    folder.mkdir(parents=True)
    (folder / "one_step.yaml").write_text("_target_: tests.test_sampler_contract.OneStep\nstrength: 0.5\n")
    return f"hydra.searchpath=[file://{tmp_path / 'conf'}]"


ARGS = ["denoiser=gaussian", "data.size=16", "data.limit=2", "logger=none", "progress=false"]
ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_a_sampler_defined_outside_the_package_runs_and_packs_through_the_cli(tmp_path):
    searchpath = conf_dir(tmp_path)
    sweep = tmp_path / "sweep"
    proc = cli("-m", *ARGS, searchpath, "sampler=one_step", "sampler.strength=0,1", f"hydra.sweep.dir={sweep}",
               cwd=tmp_path, env=ENV, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {d.name: [json.loads(x) for x in (d / "results.jsonl").read_text().splitlines()] for d in sweep.glob("[01]")}
    assert sorted(rows) == ["0", "1"]  # two points, packed into one job (one packed-0/ folder)
    assert list(sweep.glob("packed-*"))
    for point, strength in (("0", 0.0), ("1", 1.0)):
        assert [r["status"] for r in rows[point]] == ["ok", "ok"]
        assert all(r["nfe"] == 1 and r["params"]["sampler.strength"] == strength for r in rows[point])
    # strength 0 is A⁺y itself; strength 1 is the prior's x̂0: another reconstruction
    assert rows["0"][0]["metrics"]["psnr"] != rows["1"][0]["metrics"]["psnr"]


def test_a_sampler_refuses_what_it_cannot_handle_before_any_work(tmp_path):
    proc = cli(*ARGS, conf_dir(tmp_path), "sampler=one_step", "physics=phase_retrieval", cwd=tmp_path, env=ENV,
               timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: sampler=one_step needs a linear operator (it starts from A⁺y), not PhaseRetrieval"
    ]
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("results.jsonl"))
