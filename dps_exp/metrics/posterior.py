"""How far a sampler's draws are from an exact posterior: mean error, sliced Wasserstein distance, coverage.

All on the [-1, 1] image scale, per measurement. Each score comes with the value exact posterior samples
would get under the same sample count (`*_floor`, `coverage_expected`), since finite samples miss even an
exact posterior: a sampler is as good as it can be when its scores reach those.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dps_exp.denoisers.exact import Mixture


def random_directions(n: int, d: int, generator: torch.Generator | None) -> Tensor:
    """n unit vectors in R^d, uniform on the sphere, float64."""
    theta = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return theta / theta.norm(dim=1, keepdim=True)


def sliced_wasserstein(
    x: Tensor, y: Tensor, directions: int | Tensor = 256, generator: torch.Generator | None = None
) -> Tensor:
    """Sliced 2-Wasserstein distance between the empirical distributions of x (N, d) and y (M, d):

        SW₂(x, y) = ( E_θ W₂²(θᵀx, θᵀy) )^½,  θ uniform on the unit sphere,

    the expectation over `directions` random θ (or the given (L, d) unit rows). Each 1-D W₂² is exact for
    any N and M: the integral over u ∈ (0, 1) of the squared difference of the two quantile functions, both
    piecewise constant. A set shifted by s is at SW₂ = |s|/√d in expectation over θ. Returns a float64 scalar.
    """
    x, y = x.flatten(1).double(), y.flatten(1).double()
    d = x.shape[1]
    theta = random_directions(directions, d, generator) if isinstance(directions, int) else directions.double()
    px, _ = (x @ theta.T).sort(dim=0)  # (N, L)
    py, _ = (y @ theta.T).sort(dim=0)  # (M, L)
    n, m = px.shape[0], py.shape[0]
    # breakpoints of both quantile functions; on each piece both are constant
    u = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n, torch.arange(1, m + 1, dtype=torch.float64) / m])
    u = u.unique()  # sorted
    width = torch.diff(u, prepend=u.new_zeros(1))
    mid = u - width / 2
    ix = (mid * n).long().clamp_max(n - 1)
    iy = (mid * m).long().clamp_max(m - 1)
    w2 = (width[:, None] * (px[ix] - py[iy]) ** 2).sum(0)  # (L,)
    return w2.mean().sqrt()


def coverage(samples: Tensor, x_true: Tensor) -> Tensor:
    """Fraction of the values of x_true (C, H, W) inside [min, max] of the N samples (N, C, H, W) there.

    With N samples that are exchangeable with x_true (an exact posterior sampler, and x_true itself a draw
    from the prior, so from the posterior given y), each value lies in that range with probability
    (N − 1)/(N + 1), whatever the distribution: lower means over-confident samples, higher under-confident.
    """
    lo, hi = samples.amin(0), samples.amax(0)
    return ((x_true >= lo) & (x_true <= hi)).double().mean()


def posterior_metrics(
    samples: Tensor,
    exact: Mixture,
    x_true: Tensor,
    generator: torch.Generator | None = None,
    reference: int = 1000,
    directions: int = 256,
) -> dict[str, Tensor]:
    """Score N sampler draws per measurement against the exact posterior.

    samples (B, N, C, H, W), exact (a batch of B posteriors), x_true (B, C, H, W), all on the [-1, 1] scale;
    `reference` exact draws per measurement stand for the posterior in the Wasserstein distance. Returns
    {name: (B,) float64}:

    mean_rmse            RMS over the d = C·H·W values of (mean of the N samples − exact posterior mean)
    mean_rmse_floor      its expected value for N exact samples: (tr Cov / (N d))^½
    sliced_w2            SW₂ between the N samples and `reference` exact samples (`sliced_wasserstein`)
    sliced_w2_floor      the same for N exact samples (a fresh draw): the finite-sample floor
    coverage             fraction of x_true's values inside [min, max] of the N samples (`coverage`)
    coverage_expected    (N − 1)/(N + 1), its value for an exact sampler
    """
    B, N = samples.shape[:2]
    samples, x_true = samples.double().cpu(), x_true.double().cpu()
    d = samples[0, 0].numel()
    rows: dict[str, list[Tensor]] = {k: [] for k in ("sliced_w2", "sliced_w2_floor", "coverage")}
    mean_err = (samples.mean(1) - exact.mean).flatten(1)
    floor = (exact.covariance.diagonal(dim1=-2, dim2=-1).sum(-1) / (N * d)).sqrt()
    for b in range(B):
        post = exact[b]
        ref = post.sample(reference, generator)[0]
        fresh = post.sample(N, generator)[0]
        # the same directions for the score and its floor, so they differ only by the samples
        theta = random_directions(directions, d, generator)
        rows["sliced_w2"].append(sliced_wasserstein(samples[b], ref, theta))
        rows["sliced_w2_floor"].append(sliced_wasserstein(fresh, ref, theta))
        rows["coverage"].append(coverage(samples[b], x_true[b]))
    return {
        "mean_rmse": mean_err.pow(2).mean(1).sqrt(),
        "mean_rmse_floor": floor,
        **{k: torch.stack(v) for k, v in rows.items()},
        "coverage_expected": torch.full((B,), (N - 1) / (N + 1), dtype=torch.float64),
    }
