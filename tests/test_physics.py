"""Forward models: adjoints, mask statistics, per-sample parameters."""

from __future__ import annotations

import pytest
import torch

from dps_exp.physics import Noise, RandomInpainting


def gens(n, offset=0):
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


@pytest.mark.parametrize("size", [8, 33])
def test_inpainting_adjoint(size):
    p = RandomInpainting(mask=0.4).draw((2, 3, size, size), gens(2), "cpu")
    x, y = (
        torch.randn(2, 3, size, size, dtype=torch.float64),
        torch.randn(2, 3, size, size, dtype=torch.float64),
    )
    assert torch.allclose((p.A(x) * y).sum(), (x * p.A_T(y)).sum())


def test_mask_keeps_the_requested_fraction_and_is_shared_by_channels():
    p = RandomInpainting(mask=0.1).draw((1, 3, 256, 256), gens(1), "cpu")
    assert p.m.shape == (1, 1, 256, 256)
    kept = p.m.mean().item()
    assert abs(kept - 0.1) < 4 * (0.1 * 0.9 / 256**2) ** 0.5  # 4 standard errors
    y = p.A(torch.ones(1, 3, 256, 256))
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])


def test_per_sample_mask_ratios_equal_one_by_one():
    ratios = torch.tensor([0.1, 0.3, 0.5, 0.9], dtype=torch.float64)
    together = RandomInpainting(mask=ratios).draw((4, 3, 32, 32), gens(4), "cpu").m
    for b in range(4):
        alone = RandomInpainting(mask=ratios[b].item()).draw((1, 3, 32, 32), gens(1, b), "cpu").m
        assert torch.equal(together[b], alone[0])


def test_noise_is_per_sample_and_on_the_signed_scale():
    p = RandomInpainting(mask=1.0, noise=Noise(sigma=torch.tensor([0.0, 0.05]))).draw((2, 3, 64, 64), gens(2), "cpu")
    x = torch.zeros(2, 3, 64, 64)
    y = p.measure(x, gens(2, 100))
    assert y[0].abs().max() == 0
    assert abs(y[1].std().item() - 0.05) < 0.003
    assert torch.allclose(p.distance(y, x), torch.linalg.vector_norm(y.flatten(1), dim=1))


def test_noise_none_measures_exactly():
    p = RandomInpainting(mask=0.5, noise=Noise(kind="none")).draw((1, 3, 8, 8), gens(1), "cpu")
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(p.measure(x, gens(1)), p.A(x))
