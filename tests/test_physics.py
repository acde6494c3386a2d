"""Forward models: adjoints, masks, per-sample parameters, noise models, phase retrieval."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dps_exp.errors import ConfigError
from dps_exp.physics import (
    BoxInpainting,
    Denoising,
    GaussianBlur,
    MotionBlur,
    Noise,
    PhaseRetrieval,
    RandomInpainting,
    SuperResolution,
)
from dps_exp.samplers.consistency import Distance


def gens(n, offset=0):
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


LINEAR = {
    "inpaint_random": lambda: RandomInpainting(mask=0.4),
    "inpaint_box": lambda: BoxInpainting(box=5, margin=1),
    "super_resolution": lambda: SuperResolution(factor=4),
    "super_resolution_x3": lambda: SuperResolution(factor=3),
    "gaussian_blur_direct": lambda: GaussianBlur(std=torch.tensor([3.0, 1.5], dtype=torch.float64), method="direct"),
    "gaussian_blur_fft": lambda: GaussianBlur(std=torch.tensor([3.0, 1.5], dtype=torch.float64), method="fft"),
    "motion_blur_direct": lambda: MotionBlur(method="direct"),
    "motion_blur_fft": lambda: MotionBlur(method="fft"),
    "denoise": lambda: Denoising(),
}


@pytest.mark.parametrize("size", [17, 64])
@pytest.mark.parametrize("name", list(LINEAR))
def test_adjoint(name, size):
    """⟨A x, y⟩ = ⟨x, A_T y⟩ in float64; at 17 px a 61-px kernel's padding reflects more than once."""
    p = LINEAR[name]().draw((2, 3, size, size), gens(2), "cpu")
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    Ax = p.A(x)
    y = torch.randn_like(Ax)
    assert torch.allclose((Ax * y).sum(), (x * p.A_T(y)).sum(), rtol=1e-12, atol=1e-12)
    assert p.init(y).shape == x.shape


@pytest.mark.parametrize("name", ["inpaint_random", "inpaint_box", "super_resolution", "denoise"])
def test_init_is_a_pseudo_inverse_where_one_is_cheap(name):
    """A A⁺ A = A and A⁺ A A⁺ = A⁺ (Moore–Penrose) on random vectors."""
    p = LINEAR[name]().draw((2, 3, 32, 32), gens(2), "cpu")
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    y = torch.randn_like(p.A(x))
    assert torch.allclose(p.A(p.init(p.A(x))), p.A(x), atol=1e-10)
    assert torch.allclose(p.init(p.A(p.init(y))), p.init(y), atol=1e-10)


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
    kept = together.flatten(1).mean(1)
    assert (kept.diff() > 0).all()


def test_box_stays_inside_the_margin_and_reaches_both_ends():
    size, box, margin = 40, 20, 6
    tops, lefts = set(), set()
    p = BoxInpainting(box=box, margin=margin).draw((300, 3, size, size), gens(300), "cpu")
    for m in p.m[:, 0]:
        hidden = (m == 0).nonzero()
        (top, left), (bottom, right) = hidden.min(0).values.tolist(), hidden.max(0).values.tolist()
        assert (bottom - top + 1, right - left + 1, len(hidden)) == (box, box, box * box)
        assert margin <= top and bottom < size - margin and margin <= left and right < size - margin
        tops.add(top)
        lefts.add(left)
    assert tops == lefts == set(range(margin, size - margin - box + 1))


def test_box_center_placement_and_a_box_that_does_not_fit():
    p = BoxInpainting(box=128, margin=16, placement="center").draw((1, 3, 256, 256), gens(1), "cpu")
    hidden = (p.m[0, 0] == 0).nonzero()
    assert hidden.min(0).values.tolist() == [64, 64] and hidden.max(0).values.tolist() == [191, 191]
    with pytest.raises(ConfigError, match=r"physics.box=128 with physics.margin=16 does not fit a 64-pixel image"):
        BoxInpainting().draw((1, 3, 64, 64), gens(1), "cpu")


def test_per_sample_kernels_equal_one_by_one():
    """A batch of 4 blur strengths gives the 4 kernels, and the 4 measurements, of 4 runs of one."""
    x = torch.rand(4, 3, 48, 48) * 2 - 1
    for make, values in ((GaussianBlur, "std"), (MotionBlur, "intensity")):
        v = torch.tensor([0.2, 0.5, 0.8, 1.0], dtype=torch.float64) * (3 if values == "std" else 1)
        together = make(**{values: v}).draw(x.shape, gens(4), "cpu")
        y = together.A(x)
        for b in range(4):
            alone = make(**{values: v[b].item()}).draw(x[b : b + 1].shape, gens(1, b), "cpu")
            assert torch.equal(together.k[b], alone.k[0])
            assert torch.allclose(y[b], alone.A(x[b : b + 1])[0], atol=1e-6)
        assert not torch.equal(together.k[0], together.k[1])


def test_noise_is_per_sample_and_on_the_signed_scale():
    p = RandomInpainting(mask=1.0, noise=Noise(sigma=torch.tensor([0.0, 0.05]))).draw((2, 3, 64, 64), gens(2), "cpu")
    x = torch.zeros(2, 3, 64, 64)
    y = p.measure(x, gens(2, 100))
    assert y[0].abs().max() == 0
    assert abs(y[1].std().item() - 0.05) < 0.003
    assert torch.allclose(Distance("auto", p, y)(x), torch.linalg.vector_norm(y.flatten(1), dim=1))


def test_noise_none_measures_exactly():
    p = RandomInpainting(mask=0.5, noise=Noise(kind="none")).draw((1, 3, 8, 8), gens(1), "cpu")
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(p.measure(x, gens(1)), p.A(x))


def test_poisson_noise_counts_photons_as_the_official_code():
    """y = 2 c / (255 λ) − 1, c ~ Poisson(255 λ (Ax + 1)/2): integer counts, mean Ax, variance 4v / (255 λ)."""
    rates = torch.tensor([1.0, 4.0], dtype=torch.float64)
    noise = Noise(kind="poisson", rate=rates)
    Ax = torch.full((2, 3, 128, 128), 0.2)  # v = 0.6 on [0, 1]
    y = noise.sample(Ax, gens(2))
    for b, lam in enumerate(rates.tolist()):
        counts = (y[b].double() + 1) * 255 * lam / 2
        assert torch.allclose(counts, counts.round(), atol=1e-3)
        assert abs(y[b].mean().item() - 0.2) < 0.005
        assert y[b].var().item() == pytest.approx(4 * 0.6 / (255 * lam), rel=0.05)
    again = Noise(kind="poisson", rate=4.0).sample(Ax[1:], gens(1, 1))  # sample 1 alone
    assert torch.equal(again[0], y[1])
    assert noise.sample(torch.full((1, 1, 4, 4), 3.0), gens(1)).max() <= 1  # clipped as the code does


def test_phase_retrieval_is_the_centred_fft_magnitude_of_the_padded_image():
    x = torch.rand(2, 3, 256, 256, dtype=torch.float64) * 2 - 1
    p = PhaseRetrieval(oversample=2.0).draw(x.shape, gens(2), "cpu")
    y = p.A(x)
    assert y.shape == (2, 3, 384, 384)  # 64 px of zeros each side
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (64, 64), (64, 64)))
    official = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(padded, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    assert np.allclose(y.numpy(), np.abs(official))
    assert p.to_image(y).shape == x.shape and p.to_image(y).abs().max() <= 1
    xg = x[:1].float().requires_grad_(True)
    (g,) = torch.autograd.grad(Distance("auto", p, y[:1].float())(xg).sum(), xg)
    assert torch.isfinite(g).all()


def test_super_resolution_shows_its_measurement_at_the_image_size():
    p = SuperResolution(factor=4).draw((1, 3, 256, 256), gens(1), "cpu")
    y = p.A(torch.rand(1, 3, 256, 256) * 2 - 1)
    assert y.shape == (1, 3, 64, 64) and p.to_image(y).shape == (1, 3, 256, 256)
