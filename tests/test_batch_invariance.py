"""A sample's result does not depend on what else is in its batch."""

from __future__ import annotations

from omegaconf import OmegaConf

from dps_exp.experiment import Run
from tests.helpers import compose

POINTS = [
    {
        "seed": 0,
        "physics.mask": 0.1,
        "physics.noise.sigma": 0.05,
        "sampler.eta": 1.0,
        "sampler.step_size": 0.7,
    },
    {
        "seed": 0,
        "physics.mask": 0.5,
        "physics.noise.sigma": 0.05,
        "sampler.eta": 0.0,
        "sampler.step_size": 5.0,
    },
    {
        "seed": 3,
        "physics.mask": 0.3,
        "physics.noise.sigma": 0.1,
        "sampler.eta": 0.5,
        "sampler.step_size": 1.0,
    },
    {
        "seed": 0,
        "physics.mask": 0.2,
        "physics.noise.sigma": 0.0,
        "sampler.eta": 1.0,
        "sampler.step_size": 2.0,
    },
]


def test_batched_equals_alone(tmp_path):
    cfg = compose(["denoiser=gaussian", "data.size=16", "sampler.steps=20", "logger=none", "progress=false"])
    run = Run(OmegaConf.to_container(cfg, resolve=True), tmp_path, points=POINTS)
    item = run.data.items()[0]
    together = run.run_batch([(item, p) for p in POINTS])
    for b, p in enumerate(POINTS):
        alone = run.run_batch([(item, p)])
        assert (together[b] - alone[0]).abs().max().item() <= 1e-5
    # and the points really did differ
    assert (together[0] - together[1]).abs().max().item() > 1e-2
