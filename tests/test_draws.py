"""Several posterior draws per measurement (samples=N), scored against the exact posterior."""

from __future__ import annotations

import json

import pytest

from dps_exp.config import resolve
from dps_exp.run.experiment import Run
from tests.helpers import compose

GMM = ["denoiser=gmm", "data=prior_samples", "data.count=2", "metrics.names=[psnr]", "sampler.steps=30",
       "sampler.step_size=0.5", "physics.mask=0.5", "logger=none", "progress=false"]  # fmt: skip


def rows(path):
    return [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]


def test_draws_are_scored_against_the_exact_posterior(tmp_path):
    (summary,) = Run(resolve(compose([*GMM, "samples=6", "data.batch_size=4"])), tmp_path).execute()
    got = rows(tmp_path)
    assert [r["index"] for r in got] == [0, 1] and all(r["samples"] == 6 for r in got)
    metrics = got[0]["metrics"]
    for name in ("psnr", "psnr_of_mean", "mean_rmse", "mean_rmse_floor", "sliced_w2", "sliced_w2_floor", "coverage"):
        assert name in metrics and metrics[name] == metrics[name]  # present and not NaN
    assert metrics["coverage_expected"] == pytest.approx(5 / 7)
    assert metrics["mean_rmse"] >= metrics["mean_rmse_floor"] * 0.5
    assert 0 <= metrics["coverage"] <= 1
    assert summary["metrics"]["sliced_w2"]["n"] == 2  # aggregated like any metric


def test_draw_zero_is_the_single_draw_run_and_batching_does_not_matter(tmp_path):
    Run(resolve(compose([*GMM, "samples=1"])), tmp_path / "one").execute()
    Run(resolve(compose([*GMM, "samples=3", "data.batch_size=2"])), tmp_path / "split").execute()
    Run(resolve(compose([*GMM, "samples=3", "data.batch_size=6"])), tmp_path / "whole").execute()
    one, split, whole = rows(tmp_path / "one"), rows(tmp_path / "split"), rows(tmp_path / "whole")
    for a, b, c in zip(one, split, whole, strict=True):
        assert a["metrics"]["psnr"] == pytest.approx(b["metrics"]["psnr"], abs=1e-4)
        assert b["metrics"] == pytest.approx(c["metrics"], abs=1e-4)


def test_draws_on_a_prior_without_exact_posterior_record_the_mean(tmp_path, caplog):
    spec = resolve(compose(["experiment=demo", "data.size=16", "data.limit=1", "sampler.steps=5",
                            "samples=2", "logger=none", "progress=false"]))  # fmt: skip
    Run(spec, tmp_path).execute()  # natural32: a learned prior, no exact posterior
    (row,) = rows(tmp_path)
    assert {"psnr", "ssim", "psnr_of_mean", "ssim_of_mean"} <= set(row["metrics"])
    assert "mean_rmse" not in row["metrics"]


def test_the_gaussian_prior_has_an_exact_posterior_under_super_resolution(tmp_path):
    spec = resolve(compose(["denoiser=gaussian", "physics=super_resolution", "data.size=16", "sampler.steps=5",
                            "samples=2", "logger=none", "progress=false"]))  # fmt: skip
    Run(spec, tmp_path).execute()
    (row,) = rows(tmp_path)
    assert {"mean_rmse", "sliced_w2", "coverage", "psnr_of_mean"} <= set(row["metrics"])


def test_images_too_large_for_dense_algebra_get_no_exact_posterior(tmp_path, caplog):
    """64×64 RGB is 12288 dimensions: 1.1 GiB matrices and a Cholesky of hours; the run says so and goes on."""
    spec = resolve(compose(["denoiser=gaussian", "data.size=64", "data.limit=1", "sampler.steps=3",
                            "samples=2", "logger=none", "progress=false"]))  # fmt: skip
    Run(spec, tmp_path).execute()
    assert "no exact posterior (3×64×64 images have 12288 dimensions" in caplog.text
    (row,) = rows(tmp_path)
    assert "psnr_of_mean" in row["metrics"] and "mean_rmse" not in row["metrics"]


def test_no_exact_posterior_is_said_once_per_run(tmp_path, caplog):
    """The GMM under Poisson noise has no exact posterior: each run says so once, whatever its batches."""
    spec = resolve(compose([*GMM, "physics/noise=poisson", "samples=2", "data.batch_size=2", "sampler.steps=3"]))  # fmt: skip
    for name in ("a", "b"):
        Run(spec, tmp_path / name).execute()
    assert caplog.text.count("no exact posterior (the exact posterior needs Gaussian noise") == 2
    assert "mean_rmse" not in rows(tmp_path / "a")[0]["metrics"]


def test_posterior_scores_do_not_depend_on_the_batch(tmp_path):
    """Each measurement's exact posterior (and so the exact reference draws behind sliced_w2 and its floor) comes
    from its own operator alone: batch size and composition change no score."""
    base = ["experiment=demo", "denoiser=gaussian", "data.size=16", "data.limit=2", "sampler.steps=5",
            "samples=2", "logger=none", "progress=false"]  # fmt: skip
    Run(resolve(compose([*base, "data.batch_size=1"])), tmp_path / "one").execute()
    Run(resolve(compose([*base, "data.batch_size=4"])), tmp_path / "four").execute()
    for a, b in zip(rows(tmp_path / "one"), rows(tmp_path / "four"), strict=True):
        assert "sliced_w2_floor" in a["metrics"]
        assert a["metrics"] == pytest.approx(
            b["metrics"], abs=1e-5
        )  # the batch-invariance tolerance: a few ulp of a PSNR
