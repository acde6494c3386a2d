"""The operators' SVDs (dps_exp/physics/svd.py), in float64 against the operators' own A: U diag(s) Vᵀ x = A x, V and
U orthogonal, at small and odd sizes; the blur's 2-D convolution is the Kronecker product of its 1-D matrices."""

from __future__ import annotations

import math

import pytest
import torch

from dps_exp import batch
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
from dps_exp.physics.blur import blur_matrix, gaussian_factor
from dps_exp.physics.super_resolution import resize_factor

OPERATORS = {
    "denoise": lambda: Denoising(),
    "inpaint_random": lambda: RandomInpainting(mask=0.4),
    "inpaint_box": lambda: BoxInpainting(box=3, margin=1),
    "super_resolution_2": lambda: SuperResolution(factor=2),
    "super_resolution_3": lambda: SuperResolution(factor=3),
    "gaussian_blur_direct": lambda: GaussianBlur(std=1.3, kernel_size=7, method="direct"),
    "gaussian_blur_fft": lambda: GaussianBlur(std=2.0, kernel_size=9, method="fft"),
    "gaussian_blur_wide": lambda: GaussianBlur(std=3.0, kernel_size=21),  # padding wider than a 9 px side
    "gaussian_blur_per_sample": lambda: GaussianBlur(std=torch.tensor([0.8, 2.5]), kernel_size=7),
}
SHAPES = [(2, 3, 8, 8), (2, 3, 9, 7), (2, 1, 13, 11)]


def drawn(name, shape):
    physics = OPERATORS[name]()
    return physics.draw(shape, batch.generators([0] * shape[0], list(range(shape[0])), "operator"), torch.device("cpu"))


def dense(f, shape) -> torch.Tensor:
    """The (B, out, d) float64 matrices of a batched linear map f on (B, *shape[1:]) inputs whose factors broadcast
    over leading dimensions: f is applied once, to the d basis images stacked in front of the batch."""
    B, d = shape[0], math.prod(shape[1:])
    basis = torch.eye(d, dtype=torch.float64).view(d, 1, *shape[1:]).expand(d, B, *shape[1:])
    return f(basis).flatten(2).permute(1, 2, 0)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", OPERATORS)
def test_svd_reproduces_the_operator_in_float64(name, shape):
    physics = drawn(name, shape)
    svd = physics.svd()
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    Ax = physics.A(x)
    assert Ax.dtype == torch.float64
    assert (svd.U(svd.s * svd.Vt(x)) - Ax).abs().max() <= 1e-13
    assert (svd.s >= 0).all()

    V = dense(svd.V, shape)  # (B, d, d)
    eye = torch.eye(V.shape[-1], dtype=torch.float64)
    assert (V.mT @ V - eye).abs().max() <= 1e-13
    assert (dense(svd.Vt, shape) - V.mT).abs().max() <= 1e-13  # Vt is V's transpose

    m_shape = (shape[0], *Ax.shape[1:])
    U = dense(svd.U, shape)  # (B, m, d): spectral layout → measurements
    assert (U @ U.mT - torch.eye(U.shape[1], dtype=torch.float64)).abs().max() <= 1e-13  # UᵀU = I on measurements
    assert (dense(svd.Ut, m_shape) - U.mT).abs().max() <= 1e-13
    # U is zero on the spectral coordinates without a singular value (super-resolution's null space)
    slots = svd.Ut(torch.ones(m_shape, dtype=torch.float64)).ne(0) | svd.s.expand(shape).ne(0)
    assert (U.abs().sum(1).view(shape)[~slots] == 0).all()


@pytest.mark.parametrize("name", ["super_resolution_2", "super_resolution_3", "inpaint_random"])
def test_svd_pseudo_inverse_is_the_operators(name):
    shape = (2, 3, 9, 7)
    physics = drawn(name, shape)
    y = torch.randn((2, *physics.A(torch.zeros(shape)).shape[1:]), dtype=torch.float64)
    assert (physics.svd().pinv(y) - physics.init(y)).abs().max() <= 1e-12


@pytest.mark.parametrize("n", [8, 9, 16])
def test_gaussian_blur_is_the_kronecker_product_of_its_1d_reflect_convolutions(n):
    """The 2-D blur (reflect padding by k // 2, per-channel cross-correlation, FFT or direct) equals M ⊗ M, M the 1-D
    matrix of "reflect-pad, then correlate with the 1-D Gaussian", to float64 precision."""
    for method in ("direct", "fft"):
        physics = GaussianBlur(std=1.7, kernel_size=11, method=method)
        physics.draw((1, 1, n, n), batch.generators([0], [0], "operator"), torch.device("cpu"))
        M = blur_matrix(physics.profile(1), n)[0]
        basis = torch.eye(n * n, dtype=torch.float64).view(1, n * n, n, n)  # the d basis images as channels
        A = physics.A(basis).reshape(n * n, n * n).T
        assert (A - torch.kron(M, M)).abs().max() <= 1e-15
        assert (physics.k[0, 0] == torch.outer(physics.profile(1)[0], physics.profile(1)[0])).all()


def test_a_drawn_operator_computes_its_svd_once_and_a_new_draw_anew():
    physics = drawn("gaussian_blur_direct", (1, 3, 8, 8))
    assert physics.svd() is physics.svd()
    first = physics.svd()
    physics.draw((1, 3, 10, 10), batch.generators([0], [0], "operator"), torch.device("cpu"))
    assert physics.svd() is not first and physics.svd().s.shape[-2:] == (10, 10)


def test_the_1d_svds_are_computed_once_across_batches():
    """The Run builds and draws an operator for each batch; the slow 1-D SVDs (std 3 at 256 px: seconds on a loaded
    2-core CPU) are shared by every batch of the same blur or resize, and by the samples of a batch sharing a std."""
    for make, cached in ((lambda: GaussianBlur(std=torch.tensor([1.1, 1.1])), gaussian_factor),
                         (lambda: SuperResolution(factor=2), resize_factor)):  # fmt: skip
        cached.cache_clear()
        for _ in range(2):
            make().draw((2, 3, 9, 9), batch.generators([0, 0], [0, 1], "operator"), torch.device("cpu")).svd()
        assert cached.cache_info().misses == 1  # one side length, one std or scale


def test_truncation_zeroes_small_factor_singular_values():
    svd = drawn("gaussian_blur_fft", (1, 3, 8, 8)).svd()
    cut = svd.truncated(0.1)
    assert (cut.rows.s == torch.where(svd.rows.s < 0.1, 0, svd.rows.s)).all()
    assert ((cut.s == 0) | (cut.s >= 0.01)).all() and (cut.s == 0).any()
    mask = drawn("inpaint_random", (1, 3, 8, 8)).svd()
    assert (mask.truncated(0.5).s == mask.s).all()  # a 0/1 mask is unaffected


def test_operators_without_an_exact_svd_say_so():
    assert MotionBlur(kernel_size=5, noise=Noise()).svd() is None
    assert not hasattr(PhaseRetrieval(), "svd")
