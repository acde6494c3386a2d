"""No host sync inside the sampling loop, checked on the CPU for every operator and noise model.

On CUDA the host waits for the device whenever it reads a value (`.item()`, `bool(t)`, `if t:`) or runs an op
whose output shape depends on the data (`nonzero`, boolean-mask indexing, `masked_select`, `unique`). A
TorchDispatchMode sees every op the loop dispatches, forward and backward, on any device, so those ops are
caught here without a GPU. Uploads from the host are the one sync it cannot tell apart on a CPU; the `sync`
section of scripts/gpu_check.sh covers them on CUDA.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dps_exp import batch
from dps_exp.config import build, resolve
from dps_exp.denoisers import StationaryGaussian
from dps_exp.samplers.admm_tv import ADMMTV
from dps_exp.samplers.base import Sampler
from dps_exp.samplers.ddrm import DDRM
from dps_exp.samplers.dps import DPS
from dps_exp.samplers.er import ER
from dps_exp.samplers.hio import HIO
from dps_exp.samplers.mcg import MCG
from dps_exp.samplers.oss import OSS
from dps_exp.samplers.pnp_admm import PnPADMM
from dps_exp.samplers.score_sde import ScoreSDE
from tests.conftest import TinyADM, tiny_adm_state
from tests.helpers import CONF_DIR, compose

aten = torch.ops.aten
READS = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten._unique2, aten.unique_dim,
         aten.unique_consecutive, aten.equal, aten.is_nonzero}  # fmt: skip
MASKED = {aten.index, aten.index_put, aten.index_put_}  # syncing when an index is a boolean mask


class HostSyncs(TorchDispatchMode):
    """Records the ops that would make the host wait for the device."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        if packet in READS or (packet in MASKED and any(boolean_index(a) for a in args[1:2])):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def boolean_index(indices) -> bool:
    seq = indices if isinstance(indices, list | tuple) else [indices]
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in seq)


def sample_watched(
    physics_name: str, noise: str, variance: str = "eta", watch_from: int = 0, sampler: Sampler | None = None
) -> list[str]:
    """Five DPS steps at batch 2 with per-sample η and ζ (or `sampler`'s steps); returns the syncing ops seen from
    step `watch_from` (the callback of step i runs after step i, so watching starts with step watch_from + 1)."""
    small = {"inpaint_box": ["physics.box=12", "physics.margin=4"]}.get(physics_name, [])
    spec = resolve(compose([f"physics={physics_name}", f"physics.noise.kind={noise}", *small]))
    schedule = build(spec["schedule"])
    prior = TinyADM(schedule, tiny_adm_state())
    shape = (2, 3, 32, 32)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    physics = build(spec["physics"]).draw(shape, batch.generators([0, 0], [0, 1], "operator"), torch.device("cpu"))
    y = physics.measure(x, batch.generators([0, 0], [0, 1], "measurement"))
    gens = batch.generators([0, 0], [0, 1], "sampler")
    sampler = sampler or DPS(
        steps=5, eta=torch.tensor([0.5, 1.0]), step_size=torch.tensor([0.3, 1.0]), variance=variance
    )
    watcher = HostSyncs()

    def callback(i, x_next, x0):
        if i == watch_from:
            watcher.__enter__()

    try:
        sampler.sample(y, physics, prior, schedule, noise=lambda: batch.randn(shape, gens), callback=callback)
    finally:
        if watcher in torch.utils._python_dispatch._get_current_dispatch_mode_stack():
            watcher.__exit__(None, None, None)
    return watcher.seen


OPERATORS = sorted(p.stem for p in (CONF_DIR / "physics").glob("*.yaml"))


@pytest.mark.parametrize("noise", ["gaussian", "poisson"])
@pytest.mark.parametrize("physics_name", OPERATORS)
def test_the_sampling_loop_never_waits_for_the_device(physics_name, noise):
    for variance in ("eta", "learned"):
        assert sample_watched(physics_name, noise, variance) == [], (physics_name, noise, variance)


PHASE = {
    "er": lambda beta: ER(6, restarts=2),
    "hio": lambda beta: HIO(6, beta=beta, restarts=2),
    "oss": lambda beta: OSS(6, beta=beta, stages=3, restarts=2),
}


@pytest.mark.parametrize("name", sorted(PHASE))
def test_the_phase_retrieval_loops_never_wait_for_the_device(name):
    """sampler=er, hio, oss at batch 2 with a β per sample, two restarts (OSS: three stages), watched from the end
    of their first iteration to their result (the restarts' choice and the channel alignment included)."""
    spec = resolve(compose(["physics=phase_retrieval"]))
    shape = (2, 3, 16, 16)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    physics = build(spec["physics"]).draw(shape, batch.generators([0, 0], [0, 1], "operator"), torch.device("cpu"))
    y = physics.measure(x, batch.generators([0, 0], [0, 1], "measurement"))
    gens = batch.generators([0, 0], [0, 1], "sampler")
    watcher = HostSyncs()

    def callback(i, x_next, x0):
        if i == 0:
            watcher.__enter__()

    try:
        PHASE[name](torch.tensor([0.5, 0.9])).sample(y, physics, None, None, lambda: batch.randn(shape, gens), callback)
    finally:
        if watcher in torch.utils._python_dispatch._get_current_dispatch_mode_stack():
            watcher.__exit__(None, None, None)
    assert watcher.seen == []


@pytest.mark.parametrize(
    "physics_name, noise",
    [(p, "gaussian") for p in ("denoise", "gaussian_blur", "inpaint_box", "inpaint_random", "super_resolution")]
    + [("inpaint_random", "none")],
)
def test_the_ddrm_loop_never_waits_for_the_device(physics_name, noise):
    sampler = DDRM(steps=5, eta=torch.tensor([0.5, 0.85]), eta_b=torch.tensor([1.0, 0.7]))
    assert sample_watched(physics_name, noise, sampler=sampler) == []


PROJECTABLE = ["denoise", "inpaint_box", "inpaint_random", "super_resolution"]  # the operators with an exact A⁺


@pytest.mark.parametrize("physics_name", PROJECTABLE)
def test_the_projection_samplers_never_wait_for_the_device(physics_name):
    """score_sde and mcg add the projection to DPS's step (whose distances the test above covers per noise)."""
    eta, zeta = torch.tensor([0.5, 1.0]), torch.tensor([0.3, 1.0])
    for sampler in (
        ScoreSDE(steps=3, eta=eta, variance="learned"),
        MCG(steps=3, eta=eta, step_size=zeta, variance="eta"),
    ):
        assert sample_watched(physics_name, "gaussian", "", sampler=sampler) == [], (physics_name, sampler.name)


def test_the_watcher_sees_a_value_read_and_a_boolean_mask():
    watcher = HostSyncs()
    t = torch.arange(4.0)
    with watcher:
        t.sum().item()
        t[t > 1] = 0
        bool(t.any())
    assert watcher.seen == ["aten._local_scalar_dense.default", "aten.index_put_.default",
                            "aten._local_scalar_dense.default"]  # fmt: skip


LINEAR = [name for name in OPERATORS if name != "phase_retrieval"]
ADMM_CASES = [("admm_tv", name) for name in LINEAR] + [("pnp_admm", "inpaint_random")]


@pytest.mark.parametrize("sampler, physics_name", ADMM_CASES)
def test_the_admm_loops_never_wait_for_the_device(sampler, physics_name):
    """Three ADMM iterations at batch 2 with per-sample ρ (and λ or σ_d), watched from the second: every linear
    operator's A and A_T under ADMM-TV; the shared loop once more under PnP-ADMM (its prior's own ops are the
    DPS test's)."""
    small = {"inpaint_box": ["physics.box=12", "physics.margin=4"]}.get(physics_name, [])
    spec = resolve(compose([f"physics={physics_name}", *small]))
    schedule = build(spec["schedule"])
    shape = (2, 3, 32, 32)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    physics = build(spec["physics"]).draw(shape, batch.generators([0, 0], [0, 1], "operator"), torch.device("cpu"))
    y = physics.measure(x, batch.generators([0, 0], [0, 1], "measurement"))
    rho = torch.tensor([0.1, 0.3])
    chosen = {
        "admm_tv": ADMMTV(iterations=3, rho=rho, tv_weight=torch.tensor([0.01, 0.05]), tv_steps=2, cg_steps=2),
        "pnp_admm": PnPADMM(iterations=3, rho=rho, sigma=torch.tensor([0.1, 0.3]), cg_steps=2),
    }[sampler]
    watcher = HostSyncs()

    def callback(k, x, z):
        if k == 0:
            watcher.__enter__()

    try:
        chosen.sample(y, physics, StationaryGaussian(schedule), schedule, noise=None, callback=callback)
    finally:
        if watcher in torch.utils._python_dispatch._get_current_dispatch_mode_stack():
            watcher.__exit__(None, None, None)
    assert watcher.seen == [], (sampler, physics_name)
