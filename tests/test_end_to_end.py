"""The README's main command, run as a user would, in a fresh directory."""

from __future__ import annotations

import json

from PIL import Image

from tests.helpers import cli


def run_dirs(root):
    return sorted(p.parent for p in (root / "outputs").rglob("summary.json"))


def test_demo_writes_results_summary_pngs_and_offline_wandb(tmp_path):
    # the demo as shipped (300 steps, W&B offline) on its first image only: a quarter of its work keeps this test's
    # quiet-machine time (~20 s) a tenth of its timeout
    proc = cli("experiment=demo", "data.limit=1", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (out,) = run_dirs(tmp_path)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0]
    assert all(r["status"] == "ok" for r in rows)
    assert rows[0]["source"].endswith("face.png")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["ok"] == 1
    # the bundled learned prior on 20%-kept inpainting of face.png at 64×64: 24.0 dB (the demo's 4 images: 25.6 dB;
    # the Gaussian prior's: 21.7 dB)
    assert summary["metrics"]["psnr"]["mean"] > 23
    assert summary["config"]["denoiser"]["weights"] == "natural32"
    assert summary["config"]["sampler"]["steps"] == 300
    for r in rows:
        with Image.open(out / r["image"]) as im:
            assert im.size[0] > 3 * 64 and im.size[1] >= 64
        assert (out / r["operator"]).exists()
    offline = list((out / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))


def test_overrides_show_up_in_results(tmp_path):
    proc = cli("experiment=demo", "sampler.steps=20", "physics.mask=0.3", "logger=none", "data.limit=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (out,) = run_dirs(tmp_path)
    (row,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert row["params"]["sampler.steps"] == 20 and row["nfe"] == 20
    assert row["params"]["physics.mask"] == 0.3 and row["point"]["physics.mask"] == 0.3
    assert not (out / "wandb").exists()
