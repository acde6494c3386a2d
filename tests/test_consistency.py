"""Data-consistency distances (dps_exp/samplers/consistency.py): the sampler's, not the forward model's. The
plain norm and the paper's Poisson-weighted norm are exactly as they were; the official code's Poisson term is a
choice, with the default unchanged."""

from __future__ import annotations

import pytest
import torch

from dps_exp.errors import ConfigError
from dps_exp.physics.denoise import Denoising
from dps_exp.physics.noise import Noise
from dps_exp.samplers.consistency import Distance
from tests.helpers import cli

Y = torch.tensor([[-1.0, 0.0, 0.5, 1.0]], dtype=torch.float64).view(1, 1, 2, 2)
AX = torch.tensor([[-0.9, 0.1, 0.4, 0.7]], dtype=torch.float64).view(1, 1, 2, 2)


def identity(kind: str, rate: float = 2.0) -> Denoising:
    """A = I, so A x̂0 is x̂0 itself."""
    return Denoising(noise=Noise(kind=kind, rate=rate))


def test_poisson_distance_is_the_papers_weighted_norm():
    rate = 2.0
    x = AX.clone().requires_grad_(True)
    counts = ((Y + 1) * 255 * rate / 2).clamp_min(1)
    expected = ((((Y - x) * 255 * rate / 2) ** 2) / (2 * counts)).sum().sqrt()
    d = Distance("auto", identity("poisson", rate), Y)(x)  # auto: the noise model's, weighted under Poisson
    assert d.shape == (1,) and torch.allclose(d[0], expected)
    assert torch.equal(d, Distance("weighted", identity("poisson", rate), Y)(x))
    (g,) = torch.autograd.grad(d.sum(), x)
    assert torch.isfinite(g).all()


def test_the_official_poisson_term_is_the_plain_norm_times_the_mean_inverse_measurement():
    """condition_methods.py: norm = ‖y − A x̂0‖ / |y|, averaged: ‖r‖ · mean_j 1/|y_j| (y on [-1, 1])."""
    y = torch.tensor([[-1.0, 0.25, 0.5, 1.0]], dtype=torch.float64).view(1, 1, 2, 2)
    x = AX.clone().requires_grad_(True)
    d = Distance("official", identity("poisson"), y)(x)
    expected = torch.linalg.vector_norm(y - x) * (1 / y.abs()).mean()
    assert torch.allclose(d[0], expected)
    weighted = Distance("weighted", identity("poisson"), y)(x)
    (g_official,) = torch.autograd.grad(d.sum(), x)
    (g_weighted,) = torch.autograd.grad(weighted.sum(), x)
    assert not torch.allclose(g_official, g_weighted)  # another step direction and length: a real choice


def test_plain_is_the_default_under_gaussian_noise_and_poisson_terms_are_refused_there():
    d = Distance("auto", identity("gaussian"), Y)(AX)
    assert torch.allclose(d, torch.linalg.vector_norm((Y - AX).flatten(1), dim=1))
    for name in ("weighted", "official"):
        with pytest.raises(ConfigError, match=f"sampler.distance={name} weighs Poisson counts"):
            Distance(name, identity("gaussian"), Y)


def test_the_distance_is_per_sample():
    y = torch.cat([Y, Y * 0.5])
    x = torch.cat([AX, AX])
    both = Distance("official", identity("poisson"), y)(x)
    alone = Distance("official", identity("poisson"), y[1:])(x[1:])
    assert torch.equal(both[1:], alone)


def test_a_poisson_distance_under_gaussian_noise_stops_the_cli_in_one_line(tmp_path):
    proc = cli("experiment=demo", "sampler.distance=official", "logger=none", "data.limit=1", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: sampler.distance=official weighs Poisson counts")
