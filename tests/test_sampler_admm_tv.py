"""ADMM-TV against deepinv 0.4.0's `ADMM` with its `TVPrior`, on the same operator and measurement, in float64.

The parameterisations map exactly (deepinv's ADMM iterates, `g_first=False`: u = prox_{γf}(x − z),
x = prox_{γλ TV}(u + z), z = z + β(u − x); ours x, z, u in dps_exp/samplers/admm.py): deepinv's `stepsize`
γ = 1/ρ, `lambda_reg` = λ, `beta` = 1, its data fidelity `L2()` (½‖Ax − y‖²), and its (x₀, z₀) = (our z₀, 0),
passed as `init` (its default starts its dual at Aᵀy, not 0). Its x is our z, its u our x, its z our u.

The two TV proxes are different solvers of the same problem: deepinv's over-relaxed Chambolle–Pock (up to 1000
iterations a call), ours Beck–Teboulle's FGP (`tv_steps` a call, warm-started). Run to convergence they agree to
~1e-5 per ADMM iterate; our default (10 FGP steps a call) is inexact at each iterate, so its whole run is compared
with deepinv's converged ADMM instead.
"""

from __future__ import annotations

import json

import deepinv as dinv
import torch
from omegaconf import OmegaConf

from dps_exp.physics import Denoising, GaussianBlur, Noise, RandomInpainting
from dps_exp.run.experiment import Run
from dps_exp.samplers.admm import conjugate_gradient
from dps_exp.samplers.admm_tv import ADMMTV, TVProx, div, grad, tv
from tests.helpers import cli, compose

RHO, LAM = 0.14, 0.05


def measured(physics, shape=(2, 3, 8, 8)):
    """(physics drawn, y) for a random [-1, 1] image batch, in float64."""
    x = (torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1).double()
    physics.draw(x.shape, [torch.Generator().manual_seed(i) for i in range(shape[0])], torch.device("cpu"))
    y = physics.measure(x, [torch.Generator().manual_seed(10 + i) for i in range(shape[0])])
    return physics, y


class RecordedTV(dinv.optim.TVPrior):
    """deepinv's TV prior, keeping each prox output (deepinv's x_k, our z_k)."""

    def __init__(self):
        super().__init__(def_crit=1e-10, n_it_max=1000)
        self.outputs: list[torch.Tensor] = []

    def prox(self, x, *args, **kwargs):
        self.outputs.append(super().prox(x, *args, **kwargs).clone())
        return self.outputs[-1]


def deepinv_admm_tv(physics, y, iterations: int) -> list[torch.Tensor]:
    """deepinv's z iterates (its x_k) for our ADMM-TV problem, its TV prox run for 1000 Chambolle–Pock iterations
    (or to a relative change of 1e-10)."""
    prior = RecordedTV()
    model = dinv.optim.ADMM(
        prior=prior, data_fidelity=dinv.optim.L2(), stepsize=1 / RHO, lambda_reg=LAM, beta=1.0, max_iter=iterations
    )
    dphys = dinv.physics.LinearPhysics(A=physics.A, A_adjoint=physics.A_T, max_iter=500, tol=1e-12)
    z0 = physics.init(y)
    model(y, dphys, init=(z0, torch.zeros_like(z0)))
    return prior.outputs


def ours(physics, y, **kwargs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    zs = []
    result = ADMMTV(rho=RHO, tv_weight=LAM, **kwargs).sample(y, physics, None, None, None, lambda k, x, z: zs.append(z))
    assert result.nfe == 0 and (result.diverged_at == -1).all()
    return result.x, zs


def test_grad_and_div_are_adjoint_and_tv_is_isotropic_per_channel():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    ph, pv = torch.randn_like(x), torch.randn_like(x)
    ph[..., -1], pv[..., -1, :] = 0, 0
    gh, gv = grad(x)
    assert torch.allclose((gh * ph + gv * pv).sum(), -(x * div(ph, pv)).sum(), atol=1e-12)
    assert torch.allclose(tv(x), dinv.optim.TVPrior().fn(x), atol=1e-10)


def test_tv_prox_matches_deepinv_tv_denoiser():
    v = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)).double() * 2 - 1
    gamma = torch.tensor([0.1, 0.3], dtype=torch.float64).view(-1, 1, 1, 1)
    theirs = dinv.models.TVDenoiser(crit=0, n_it_max=1000)(v, ths=gamma)
    assert (TVProx(gamma, 1000)(v) - theirs).abs().max().item() <= 2e-5  # measured 4e-6 (ours: FGP's O(1/k²))


def test_each_iteration_matches_deepinv_admm_tv():
    """Both TV proxes run close to convergence: every iterate agrees (measured ≤ 3e-5 on this draw)."""
    physics, y = measured(RandomInpainting(mask=0.3, noise=Noise(sigma=0.05)))
    theirs = deepinv_admm_tv(physics, y, 2)
    _, zs = ours(physics, y, iterations=2, tv_steps=600, cg_steps=10)
    assert max((a - b).abs().max().item() for a, b in zip(zs, theirs, strict=True)) <= 1e-4


def test_the_default_run_reaches_the_exact_minimiser():
    """Our default inexact TV prox (10 warm-started FGP steps a call) still converges: for denoising the minimiser of
    ½‖y − x‖² + λ TV(x) is prox_{λ TV}(y), here deepinv's TV denoiser run to convergence. Measured after 80
    iterations: 2e-6 from it, objectives 3e-7 apart (the reference's own error: 1000 Chambolle–Pock iterations)."""
    physics, y = measured(Denoising(noise=Noise(sigma=0.1)))
    exact = dinv.models.TVDenoiser(crit=1e-12, n_it_max=1000)(y, ths=LAM)
    x, _ = ours(physics, y, iterations=80)
    objective = lambda v: 0.5 * (v - y).square().flatten(1).sum(1) + LAM * tv(v)  # noqa: E731
    assert (x - exact).abs().max().item() <= 1e-5
    assert (objective(x) - objective(exact)).abs().max().item() <= 1e-6


def test_conjugate_gradient_solves_the_x_update_of_a_blur():
    """The x-update (AᵀA + ρI) x = b on a blur (no closed form), against a dense solve."""
    physics, y = measured(GaussianBlur(std=1.0, kernel_size=5, method="fft"), shape=(1, 1, 6, 6))
    b = physics.A_T(y) + RHO * torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    apply = lambda v: physics.A_T(physics.A(v)) + RHO * v  # noqa: E731
    basis = torch.eye(36, dtype=torch.float64).view(36, 1, 1, 6, 6)
    M = torch.stack([apply(e).flatten() for e in basis], dim=1)
    exact = torch.linalg.solve(M, b.flatten())
    assert (conjugate_gradient(apply, b, torch.zeros_like(b), 40).flatten() - exact).abs().max().item() <= 1e-9


def test_a_sample_does_not_depend_on_its_batch(tmp_path):
    """Per-sample ρ, λ and mask through the Run: each sample batched as it is alone (≤ 1e-5)."""
    points = {"sampler.rho": [0.1, 0.14, 0.5], "sampler.tv_weight": [0.01, 0.05, 0.02], "physics.mask": [0.2, 0.4, 0.3]}
    lists = [f"{k}=[{','.join(map(str, v))}]" for k, v in points.items()]
    overrides = ["sampler=admm_tv", "sampler.iterations=5", "denoiser=gaussian", "data.size=16", "logger=none"]
    run = Run(OmegaConf.to_container(compose([*overrides, "progress=false", *lists]), resolve=True), tmp_path)
    item = run.data.items()[0]
    together = run.run_batch([(item, p, 0) for p in run.points])
    for b, p in enumerate(run.points):
        assert (together[b] - run.run_batch([(item, p, 0)])[0]).abs().max().item() <= 1e-5
    assert (together[0] - together[1]).abs().max().item() > 1e-2


ARGS = ["denoiser=gaussian", "data.size=32", "data.limit=1", "logger=none", "progress=false"]


def test_runs_end_to_end_through_the_cli_with_no_network_evaluation(tmp_path):
    proc = cli(*ARGS, "sampler=admm_tv", "sampler.iterations=5", "physics=inpaint_random", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results,) = tmp_path.glob("outputs/*/*/results.jsonl")
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["status"] == "ok" and row["nfe"] == 0 and row["metrics"]["psnr"] > 10


def test_refuses_phase_retrieval_in_one_line(tmp_path):
    proc = cli(*ARGS, "sampler=admm_tv", "physics=phase_retrieval", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: sampler=admm_tv needs a linear operator with an adjoint (its x-update solves (AᵀA + ρI) x = Aᵀy + …); "
        "PhaseRetrieval is not linear: use sampler=dps"
    ]
