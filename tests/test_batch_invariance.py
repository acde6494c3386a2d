"""A sample's result does not depend on what else is in its batch."""

from __future__ import annotations

from omegaconf import OmegaConf

from dps_exp.run.experiment import Run
from tests.helpers import compose

POINTS = {  # four sweep points, zipped
    "seed": [0, 0, 3, 0],
    "physics.mask": [0.1, 0.5, 0.3, 0.2],
    "physics.noise.sigma": [0.05, 0.05, 0.1, 0.0],
    "sampler.eta": [1.0, 0.0, 0.5, 1.0],
    "sampler.step_size": [0.7, 5.0, 1.0, 2.0],
}


def test_batched_equals_alone(tmp_path):
    lists = [f"{k}=[{','.join(map(str, v))}]" for k, v in POINTS.items()]
    cfg = compose(["denoiser=gaussian", "data.size=16", "sampler.steps=20", "logger=none", "progress=false", *lists])
    run = Run(OmegaConf.to_container(cfg, resolve=True), tmp_path)
    assert len(run.points) == 4 and run.points[2].values["seed"] == 3
    item = run.data.items()[0]
    together = run.run_batch([(item, p, 0) for p in run.points])
    for b, p in enumerate(run.points):
        alone = run.run_batch([(item, p, 0)])
        assert (together[b] - alone[0]).abs().max().item() <= 1e-5
    # and the points really did differ
    assert (together[0] - together[1]).abs().max().item() > 1e-2
