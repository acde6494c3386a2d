"""The paper's experiments take every baseline of its tables: `experiment=paper/<task> sampler=<method>` composes
with that method's paper settings and no other key, a task the method cannot run is refused before any work
(the Run's own check, in-process; once through the CLI: one line, exit 2), and the prior-free methods run without
a network (`denoiser=none`)."""

from __future__ import annotations

import pytest
import torch

from dps_exp import batch as streams
from dps_exp.analysis.paper_table import load_values
from dps_exp.config import build, resolve
from dps_exp.denoisers.none import NoPrior
from dps_exp.errors import ConfigError
from dps_exp.run.experiment import Run
from dps_exp.run.settings import validate
from dps_exp.schedule import LinearSchedule
from tests.conftest import TinyADM, tiny_adm_state
from tests.helpers import cli, compose

TASKS = ["sr4", "inpaint_box", "inpaint_random", "deblur_gauss", "deblur_motion", "phase_retrieval"]
LINEAR = TASKS[:5]
SUPPORTED = {  # the paper's rows each method can run here (dps_exp/samplers/*: check)
    "ddrm": ["sr4", "inpaint_box", "inpaint_random", "deblur_gauss"],  # an exact SVD; the paper has no motion row
    "mcg": ["sr4", "inpaint_box", "inpaint_random"],  # an exact A⁺: no deblurring
    "score_sde": ["sr4", "inpaint_box", "inpaint_random"],
    "pnp_admm": LINEAR,
    "admm_tv": LINEAR,
    "er": ["phase_retrieval"],
    "hio": ["phase_retrieval"],
    "oss": ["phase_retrieval"],
}
SETTINGS = {  # each method's setting in the paper's tables (dps_facts.md §5), or our stated defaults
    "ddrm": {"steps": 20, "eta": 0.85, "eta_b": 1.0},
    "mcg": {"steps": 1000, "variance": "learned", "step_size": 1.0},
    "score_sde": {"steps": 1000, "variance": "learned"},
    "pnp_admm": {"iterations": 10, "rho": 0.2, "sigma": 0.2},
    "admm_tv": {"iterations": 50, "rho": 0.14, "tv_weight": 0.027},
    "er": {"iterations": 2000, "restarts": 1},
    "hio": {"iterations": 2000, "beta": 0.9},
    "oss": {"iterations": 2000, "stages": 10},
}
PRIOR_FREE = {"admm_tv", "er", "hio", "oss"}
CLASSES = {method: spec["sampler"] for method, spec in load_values()["methods"].items()}
IMAGENET = ["data.root=/data", "data.file_list=/data/list.txt"]


def experiments(method: str) -> list[tuple[str, str, list[str]]]:
    """(task, experiment, its overrides) of each FFHQ task the method supports, and of its first ImageNet one
    (the ImageNet experiments differ from the FFHQ ones in the prior and the data only)."""
    tasks = SUPPORTED[method]
    imagenet = [(t, f"imagenet_{t}", IMAGENET) for t in tasks if t != "phase_retrieval"][:1]
    return [(t, f"ffhq_{t}", []) for t in tasks] + imagenet


PRIORS = {True: NoPrior(LinearSchedule()), False: TinyADM(LinearSchedule(), tiny_adm_state())}  # learned variance


def drawn(physics_node: dict):
    """The operator of the Run's check: drawn once, for one image at the paper's 256 px."""
    physics = build(physics_node)
    physics.draw((1, 3, 256, 256), streams.generators([0], [0], "check"), torch.device("cpu"))
    return physics


def refusal(method: str, sampler_node: dict, physics) -> str | None:
    """What the Run's check (before any work) says of `method` on this operator, or None."""
    try:
        build(sampler_node).check(PRIORS[method in PRIOR_FREE], physics)
    except ConfigError as err:
        return str(err)
    return None


def test_each_baseline_composes_with_its_paper_settings_and_refuses_the_tasks_it_cannot_run():
    physics_of, sampler_of = {}, {}
    for method in SUPPORTED:
        for task, name, extra in experiments(method):
            spec = resolve(compose([f"experiment=paper/{name}", f"sampler={method}", *extra]))
            validate(spec)
            sampler = spec["sampler"]
            assert {k: sampler[k] for k in SETTINGS[method]} == SETTINGS[method], (name, method)
            assert sampler["_target_"].rsplit(".", 1)[1] == CLASSES[method]  # make_table finds its row by it
            dataset = name.split("_", 1)[0]
            if method in PRIOR_FREE:  # no network: nothing downloaded or loaded
                assert spec["denoiser"] == {"_target_": "dps_exp.denoisers.none.NoPrior"}
            else:
                assert spec["denoiser"]["architecture"] == dataset
            assert spec["metrics"]["names"] == ["psnr", "ssim", "lpips", "fid"]
            assert spec["physics"]["noise"]["sigma"] == 0.05
            assert spec["seed"] == ([0, 1, 2, 3] if task == "phase_retrieval" else 0)  # best of 4, as DPS
            physics_of[task], sampler_of[method] = spec["physics"], sampler
    refused, operators = {}, {task: drawn(node) for task, node in physics_of.items()}
    for method, tasks in SUPPORTED.items():
        for task in TASKS:
            said = refusal(method, sampler_of[method], operators[task])
            assert (said is None) == (task in tasks), (method, task, said)
            if said:
                refused[method, task] = said
    assert len(refused) == 9 * 6 - sum(map(len, SUPPORTED.values())) - 6  # DPS (not in SUPPORTED) runs all six
    assert refused["ddrm", "deblur_motion"].startswith("sampler=ddrm needs an operator with an exact SVD")
    assert refused["mcg", "deblur_gauss"].startswith("sampler=mcg needs the operator's exact pseudo-inverse")
    assert refused["er", "sr4"] == (
        "sampler=er solves Fourier phase retrieval only (physics=phase_retrieval), not SuperResolution"
    )
    assert all("\n" not in said for said in refused.values())


def test_a_dps_only_variant_refuses_a_sampler_without_a_step_size():
    spec = resolve(compose(["experiment=paper/ffhq_sr4_zeta", "sampler=ddrm"]))
    with pytest.raises(ConfigError, match=r"^sampler.step_size is not a key of sampler \(DDRM\)"):
        validate(spec)


TINY = ["data=sample", "data.size=32", "data.limit=1", "metrics.names=[psnr]", "logger=none", "progress=false"]


def test_a_prior_free_baseline_runs_without_a_network_and_a_prior_user_is_stopped(tmp_path):
    spec = resolve(compose(["experiment=paper/ffhq_phase_retrieval", "sampler=er", "sampler.iterations=5",
                            "seed=0", *TINY]))  # fmt: skip
    (summary,) = Run(spec, tmp_path / "er").execute()
    assert summary["status"] == "complete" and summary["ok"] == 1
    assert summary["config"]["denoiser"] == {"_target_": "dps_exp.denoisers.none.NoPrior"}
    spec = resolve(compose(["experiment=paper/ffhq_sr4", "denoiser=none", "sampler.steps=2", "sampler.variance=eta",
                            *TINY]))  # fmt: skip
    with pytest.raises(ConfigError, match="^denoiser=none has no network, and this sampler calls its prior"):
        Run(spec, tmp_path / "dps").execute()


def test_the_cli_refuses_a_task_the_baseline_cannot_run_in_one_line(tmp_path):
    proc = cli("experiment=paper/ffhq_sr4", "sampler=er", *TINY, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: sampler=er solves Fourier phase retrieval only (physics=phase_retrieval), not SuperResolution"
    )
    assert "Traceback" not in proc.stderr
