"""Step count packs too: each sample walks its own chain (steps, η, …), and with continuous batching a sample that
ends frees its slot for the next. A sample's result is the one it gets alone, whenever it entered the batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from dps_exp.config import build, resolve
from dps_exp.metrics.image import Metrics
from dps_exp.run.engine import Batch, Engine, StreamJob
from dps_exp.run.experiment import Run
from dps_exp.run.points import expand
from dps_exp.run.settings import per_sample_of
from dps_exp.samplers.dps import DPS
from tests.conftest import TinyADM, tiny_adm_state
from tests.helpers import cli, compose, signal_after

TOL = 1e-5
BASE = ["denoiser=gaussian", "data.size=16", "logger=none", "progress=false", "sampler.step_size=5"]
# a steps × eta × mask sweep, listed as points of one run
POINTS = ["sampler.steps=[2,5,4,10]", "sampler.eta=[0,1,0.5,1]", "physics.mask=[0.1,0.3,0.2,0.5]"]


def engine_for(spec: dict, prior=None) -> Engine:
    schedule = build(spec["schedule"])
    prior = prior or build(spec["denoiser"], schedule=schedule).eval().requires_grad_(False)
    return Engine(spec, schedule, prior, Metrics(["psnr"]), torch.device("cpu"))


def alone(engine: Engine, image: torch.Tensor, values: dict, index: int = 0):
    batch = Batch(image[None], {k: [v] for k, v in values.items()}, [index], [0])
    return engine(batch)


@pytest.mark.parametrize("prior", ["gaussian", "tiny_adm"])
def test_continuously_batched_equals_alone(prior):
    """Two slots, four chains of 2, 5, 4 and 10 steps: chains enter as others end (the third enters after the
    first's 2 steps, mid-way through the second's), and each result is the one it gets alone."""
    spec = resolve(compose([*BASE, *POINTS, "sampler.variance=learned" if prior == "tiny_adm" else "sampler.eta=1"]))
    model = None
    if prior == "tiny_adm":
        model = TinyADM(build(spec["schedule"]), tiny_adm_state())
    engine = engine_for(spec, model)
    points = expand(spec, per_sample_of(spec))
    assert engine.continuous(points)  # the chains differ in length
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    jobs = [StreamJob(k, image, values, 0, 0) for k, values in enumerate(points)]
    got = dict(engine.stream(iter(jobs), capacity=2))
    assert sorted(got) == [0, 1, 2, 3]
    for k, values in enumerate(points):
        ref = alone(engine, image, values)
        assert (got[k].x - ref.x).abs().max() <= TOL
        assert got[k].nfe == ref.nfe == [values["sampler.steps"]]
        assert got[k].diverged_at == ref.diverged_at == [-1]


def test_a_batch_walked_in_step_gives_each_sample_its_own_chain():
    """`DPS.sample` with per-sample step counts (a (B,) tensor): a shorter chain stops changing at its end."""
    spec = resolve(compose([*BASE, *POINTS]))
    engine = engine_for(spec)
    points = expand(spec, per_sample_of(spec))
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2))
    together = engine(Batch(image[None].expand(4, -1, -1, -1), {k: [p[k] for p in points] for k in points[0]},
                            [0] * 4, [0] * 4))  # fmt: skip
    assert together.nfe == [2, 5, 4, 10]
    for b, values in enumerate(points):
        assert (together.x[b] - alone(engine, image, values).x[0]).abs().max() <= TOL


def test_a_sweep_over_steps_runs_continuously_with_the_rows_of_separate_runs(tmp_path):
    spec = resolve(compose([*BASE, "data.limit=2", "data.batch_size=3", *POINTS]))
    (summaries) = Run(spec, tmp_path / "packed").execute()
    assert len(summaries) == 4
    for k, values in enumerate(expand(spec, per_sample_of(spec))):
        single = [f"{key}={value}" for key, value in values.items() if key != "seed"]
        (summary,) = Run(resolve(compose([*BASE, "data.limit=2", *single])), tmp_path / f"alone-{k}").execute()
        packed = {r["index"]: r for r in rows(tmp_path / "packed" / f"point-{k}")}
        for r in rows(tmp_path / f"alone-{k}"):
            assert packed[r["index"]]["metrics"]["psnr"] == pytest.approx(r["metrics"]["psnr"], abs=TOL)
            assert packed[r["index"]]["nfe"] == r["nfe"] == values["sampler.steps"]


def rows(directory) -> list[dict]:
    return [json.loads(line) for line in (directory / "results.jsonl").read_text().splitlines()]


def test_a_killed_continuous_run_resumes_to_the_same_rows_without_duplicates(tmp_path):
    args = [*BASE, "data.limit=2", "data.batch_size=2", "sampler.steps=[2,7]", "hydra.run.dir=out"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, "-c", signal_after(1, signal.SIGKILL), *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    first = (
        [r for k in (0, 1) for r in rows(tmp_path / "out" / f"point-{k}")]
        if (tmp_path / "out/point-1/results.jsonl").exists()
        else None
    )  # noqa: E501
    assert first is None or len(first) == 1
    resumed = cli(*args, cwd=tmp_path, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    clean = cli(*args[:-1], "hydra.run.dir=clean", cwd=tmp_path, timeout=120)
    assert clean.returncode == 0, clean.stderr[-2000:]
    for k in (0, 1):
        got, want = rows(tmp_path / "out" / f"point-{k}"), rows(tmp_path / "clean" / f"point-{k}")
        assert sorted(r["key"] for r in got) == sorted(r["key"] for r in want)  # all, each once
        by_key = {r["key"]: r["metrics"]["psnr"] for r in want}
        assert all(r["metrics"]["psnr"] == pytest.approx(by_key[r["key"]], abs=TOL) for r in got)


def test_a_per_sample_step_count_is_refused_in_one_line_where_the_sampler_cannot_walk_it(tmp_path):
    """A sampler whose `steps` is not per sample takes one value per run; a sweep over it runs job by job."""
    with pytest.raises(Exception, match="takes one value per run"):
        from dps_exp.run.settings import validate

        validate(resolve(compose([*BASE, "sampler.variance=[eta,learned]"])))
    proc = cli(*BASE, "data.limit=1", "sampler.variance=[eta,learned]", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: sampler.variance=['eta', 'learned'] is not allowed: sampler.variance takes one value per run (it is "
        "not per sample): sweep it with -m sampler.variance=eta,learned"
    ]


def test_dps_steps_is_a_per_sample_key():
    assert "sampler.steps" in per_sample_of(resolve(compose(BASE)))
    assert DPS(steps=torch.tensor([3.0, 5.0])).chain(build(resolve(compose(BASE))["schedule"]), 1)[0].shape == (5,)
