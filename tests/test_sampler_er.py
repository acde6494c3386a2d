"""sampler=er (error reduction, dps_exp/samplers/er.py) against a numpy reference written from Fienup (1982), and
as the run uses it; the shared parts (dps_exp/samplers/alternating.py) are tested here too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dps_exp.errors import ConfigError
from dps_exp.physics.inpaint import RandomInpainting
from dps_exp.physics.noise import Noise
from dps_exp.physics.phase import PhaseRetrieval
from dps_exp.samplers.alternating import FourierMagnitudes, align_to_first_channel
from dps_exp.samplers.er import ER
from dps_exp.samplers.hio import HIO
from dps_exp.samplers.oss import OSS
from tests import phase_reference as ref
from tests.phase_reference import one_thread  # noqa: F401  (autouse)


def test_er_follows_the_reference_step_by_step():
    """60 iterations on two noisy 16×16 two-channel problems (negative magnitudes included), float64: every
    iterate's estimate within 1e-12 of the reference's."""
    x, y, physics, x0 = ref.problem()
    assert (y < 0).any()  # the noise made some magnitudes negative: both clamp them to 0
    result, steps = ref.ours(ER(60, align_channels=False), y, physics, x0)
    pw, _, ph, _ = physics.padding(16, 16)
    for b in range(2):
        outs, final = ref.er(ref.Grid(y[b].numpy(), ph, pw), x0[b].numpy(), 60)
        assert np.abs(steps[:, b].numpy() - np.stack(outs)).max() < 1e-12
        assert np.abs(result.x[b].numpy() - final).max() < 1e-12
    assert result.nfe == 0 and result.diverged_at.tolist() == [-1, -1]
    assert result.x.abs().max() <= 1  # the object constraint holds on the estimate


def test_er_rarely_recovers_a_simple_image():
    """Noiseless, 300 iterations, 5 simple 16×16 images × 8 random starts: ER recovers (RMSE < 0.05 up to the
    sign and the 180° rotation) at most 4 of the 40 runs (measured: 1), where HIO and OSS recover most
    (tests/test_sampler_hio.py, test_sampler_oss.py): it stalls in the local minimum nearest its start."""
    assert sum(ref.recoveries(ER(300))) <= 4


def test_the_range_constraint_is_what_recovers_images_that_touch_it(monkeypatch):
    """The [-1, 1] range in the object constraint: HIO recovers the rectangles (which sit at −1 and 1) from 7 of 8
    starts with it, and from none with the support alone."""
    assert ref.recoveries(HIO(300))[0] >= 6
    monkeypatch.setattr(FourierMagnitudes, "constrain", lambda self, x: torch.where(self.support, x, 0.0))
    monkeypatch.setattr(FourierMagnitudes, "satisfied", lambda self, x: self.support.expand_as(x))
    assert ref.recoveries(HIO(300))[0] == 0


def test_channel_alignment_keeps_the_magnitudes_and_undoes_a_channel_s_own_flip():
    x, y, physics, _ = ref.problem(batch=2, channels=3, sigma=0)
    x[:, 1:] = x[:, :1] + 0.05 * x[:, 1:]  # strongly correlated channels, as a photograph's
    scrambled = torch.stack([x[:, 0], -x[:, 1].flip(-2, -1), -x[:, 2]], dim=1)
    assert torch.allclose(physics.A(scrambled), physics.A(x))  # equally consistent with y
    assert torch.equal(align_to_first_channel(scrambled), x)
    assert torch.equal(align_to_first_channel(-x), -x)  # the image as a whole keeps its ambiguity


def test_align_channels_turns_the_result_s_channels_and_nothing_else():
    x, y, physics, x0 = ref.problem(channels=3)
    plain, _ = ref.ours(ER(20), y, physics, x0)
    aligned, _ = ref.ours(ER(20, align_channels=True), y, physics, x0)
    assert torch.equal(aligned.x, align_to_first_channel(plain.x))


def test_restarts_keep_each_sample_s_best_fit():
    """Three starts: each sample's estimate is that of its lowest Fourier error, never worse than the first."""
    x, y, physics, x0 = ref.problem(sigma=0)
    one, _ = ref.ours(ER(40, align_channels=False), y, physics, x0)
    three, steps = ref.ours(ER(40, restarts=3, align_channels=False), y, physics, x0)
    assert len(steps) == 120 and torch.equal(steps[39], one.x)  # the first run is the single run
    problem = FourierMagnitudes(y, physics, (16, 16))
    runs = torch.stack([problem.error(problem.embed(steps[k])) for k in (39, 79, 119)])  # (3 runs, 2 samples)
    assert torch.equal(three.x, steps[[39, 79, 119]][runs.argmin(0), [0, 1]])
    assert (runs.min(0).values < runs[0]).any()  # a later start did better somewhere


@pytest.mark.parametrize("sampler", [ER(), HIO(), OSS()], ids=["er", "hio", "oss"])
def test_any_prior_goes_and_only_phase_retrieval_without_poisson_noise(sampler, tiny):
    sampler.check(tiny, PhaseRetrieval())
    sampler.check(None, PhaseRetrieval(noise=Noise("none")))
    with pytest.raises(ConfigError, match=rf"sampler={sampler.name} solves Fourier phase retrieval only"):
        sampler.check(tiny, RandomInpainting())
    with pytest.raises(ConfigError, match="which Poisson noise clips to"):
        sampler.check(tiny, PhaseRetrieval(noise=Noise("poisson")))


def test_the_cli_refuses_another_operator_in_one_line(tmp_path):
    assert ref.refused("er", tmp_path, "physics=gaussian_blur") == (
        "error: sampler=er solves Fourier phase retrieval only (physics=phase_retrieval), not GaussianBlur"
    )


def test_the_cli_runs_er_on_phase_retrieval_best_of_four(tmp_path):
    ref.best_of_four("er", tmp_path)


def test_a_sample_s_result_does_not_depend_on_its_batch(tmp_path):
    points = {"seed": [0, 0, 3], "physics.noise.sigma": [0.05, 0.0, 0.1]}
    assert max(ref.batched_minus_alone("er", tmp_path, points)) <= 1e-5
