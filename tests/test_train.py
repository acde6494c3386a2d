"""scripts/train_prior.py: a few steps run, a resumed run continues the same loss curve exactly, and the
weights it writes load as a prior (checked against their card)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from PIL import Image

from dps_exp.config import build, check_node, resolve
from dps_exp.denoisers.trained import TrainedADM
from dps_exp.denoisers.weights import CheckpointError
from dps_exp.errors import UserError
from tests.helpers import ROOT, compose

TINY = [
    "train.name=tiny",
    "train.architecture.image_size=16",
    "train.architecture.channel_mult=[1,2]",
    "train.data.crop=16",
    "train.batch_size=4",
    "train.warmup=5",
    "train.log_every=1",
    "train.checkpoint_every=5",
    "train.max_minutes=null",
    "train.progress=false",
    "train.threads=1",  # a tiny network: more threads only fight over the (shared) cores
]


@pytest.fixture(autouse=True)
def restore_threads():
    """Trainer sets torch's thread count (a process-wide setting); leave it as the other tests found it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three smooth 40×48 colour images and one held out."""
    root = tmp_path_factory.mktemp("photos")
    gen = torch.Generator().manual_seed(0)
    for i in range(4):
        img = torch.nn.functional.interpolate(torch.rand(1, 3, 10, 12, generator=gen), size=(40, 48), mode="bilinear")
        Image.fromarray((img[0].permute(1, 2, 0) * 255).byte().numpy()).save(root / f"img{i}.png")
    return root


def trainer(photos, *overrides):
    spec = resolve(
        compose([*TINY, f"train.data.root={photos}", "train.data.holdout=[img3.png]", *overrides], "train_prior")
    )
    check_node(spec["train"], "train")
    return build(spec["train"], _convert_="all")


def losses(run_dir):
    with (run_dir / "loss.csv").open() as f:
        return [(int(r["step"]), float(r["loss"]), float(r["loss_ema"])) for r in csv.DictReader(f)]


def test_resumed_training_continues_the_same_loss_curve_and_its_weights_load(photos, tmp_path, schedule):
    whole, split = tmp_path / "whole", tmp_path / "split"
    card = trainer(photos, "train.steps=20").fit(whole)
    trainer(photos, "train.steps=10").fit(split)
    trainer(photos, "train.steps=20").fit(split)  # the same directory: continues from its checkpoint
    assert [s for s, *_ in losses(whole)] == list(range(1, 21))
    assert losses(split) == losses(whole)
    assert (split / "tiny.safetensors").read_bytes() == (whole / "tiny.safetensors").read_bytes()
    assert card["training"]["steps"] == 20 and card["data"]["holdout"] == ["img3.png"]
    assert card["data"]["images"] == ["img0.png", "img1.png", "img2.png"]
    assert json.loads((whole / "tiny.json").read_text()) == card

    prior = TrainedADM(schedule, weights=str(whole / "tiny.safetensors"))
    assert prior.provenance["sha256"] == card["weights"]["sha256"]
    pred = prior(torch.randn(2, 3, 16, 16), torch.tensor([3, 900]))
    assert pred.eps.shape == (2, 3, 16, 16) and torch.isfinite(pred.x0).all()

    # train.resume=DIR continues another run's checkpoint in a new directory, its loss log carried over
    trainer(photos, "train.steps=25", f"train.resume={whole}").fit(tmp_path / "more")
    assert losses(tmp_path / "more")[:20] == losses(whole) and len(losses(tmp_path / "more")) == 25


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_training_saves_its_step_and_resumes_exactly(photos, tmp_path, monkeypatch, signum):
    """A signal mid-step lets the step finish, checkpoints it (checkpoint_every is far off) and stops; the same
    command then continues the loss curve of an uninterrupted run."""
    from dps_exp.train.trainer import Trainer

    trainer(photos, "train.steps=8").fit(tmp_path / "whole")
    real = Trainer.train_step

    def signalled_at_step_three(self):
        if self.step == 2:
            os.kill(os.getpid(), signum)  # arrives inside the step
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", signalled_at_step_three)
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt(15)))
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer(photos, "train.steps=8", "train.checkpoint_every=100").fit(tmp_path / "split")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["step"] == 3
    monkeypatch.setattr(Trainer, "train_step", real)
    trainer(photos, "train.steps=8").fit(tmp_path / "split")
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")


def test_weights_that_do_not_match_their_card_are_refused(photos, tmp_path, schedule):
    trainer(photos, "train.steps=2").fit(tmp_path)
    weights = tmp_path / "tiny.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match|records"):
        TrainedADM(schedule, weights=str(weights))
    with pytest.raises(CheckpointError, match="neither a bundled prior"):
        TrainedADM(schedule, weights="no_such_prior")
    with pytest.raises(CheckpointError, match="nonexist.safetensors'?: no such file"):
        TrainedADM(schedule, weights=str(tmp_path / "nonexist.safetensors"))


def test_a_broken_card_and_an_unfinished_training_are_named(photos, tmp_path, schedule):
    trainer(photos, "train.steps=2").fit(tmp_path)
    card = tmp_path / "tiny.json"
    card.write_text(card.read_text()[:40])  # truncated
    with pytest.raises(CheckpointError, match="the card .*tiny.json is unreadable \\(JSONDecodeError"):
        TrainedADM(schedule, weights=str(card))
    (tmp_path / "tiny.safetensors").unlink()
    with pytest.raises(CheckpointError, match="checkpoint.pt is there: a training not finished"):
        TrainedADM(schedule, weights=str(tmp_path / "tiny.safetensors"))


def test_bad_training_settings_stop_with_a_message(photos):
    with pytest.raises(UserError, match="train.lr=-1 is not allowed: it must satisfy 0 < lr"):
        trainer(photos, "train.lr=-1")
    with pytest.raises(UserError, match="every image is held out"):
        trainer(photos, "train.data.holdout=[img0.png,img1.png,img2.png,img3.png]")
    with pytest.raises(UserError, match="no image 'nope.png'"):
        trainer(photos, "train.data.images=[nope.png]")
    with pytest.raises(UserError, match="model_channels=48 × channel_mult gives 48 channels, not a multiple of norm"):
        trainer(photos, "train.architecture.model_channels=48")
    with pytest.raises(UserError, match="train.data.crop=12 differs from train.architecture.image_size=16"):
        trainer(photos, "train.data.crop=12")
    with pytest.raises(UserError, match="image_size=17 is not a multiple of 2"):
        trainer(photos, "train.data.crop=17", "train.architecture.image_size=17")


def test_the_script_runs_from_the_command_line(photos, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    data = [f"train.data.root={photos}", "train.data.holdout=[]"]
    args = [sys.executable, str(ROOT / "scripts" / "train_prior.py"), *TINY, *data]
    proc = subprocess.run(
        [*args, "train.steps=3", f"hydra.run.dir={tmp_path}"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "tiny.safetensors").is_file() and len(losses(tmp_path)) == 3


def test_the_shipped_weights_are_the_warmed_up_ema_of_the_trained_ones(photos, tmp_path, monkeypatch):
    """EMA_0 = the initial weights; step s (from 0) moves it by lerp(EMA, weights, 1 − min(ema, (1+s)/(10+s))):
    with ema = 0.5 the warm-up holds for steps 0-7 and the decay for 8-11."""
    from safetensors.torch import load_file

    from dps_exp.train.trainer import Trainer

    weights = []  # the network's weights before the first step and after each
    real = Trainer.train_step

    def recorded(self):
        if not weights:
            weights.append({k: v.detach().clone() for k, v in self.net.state_dict().items()})
        loss = real(self)
        weights.append({k: v.detach().clone() for k, v in self.net.state_dict().items()})
        return loss

    monkeypatch.setattr(Trainer, "train_step", recorded)
    trainer(photos, "train.steps=12", "train.ema=0.5").fit(tmp_path)
    ema = weights[0]
    for step, after in enumerate(weights[1:]):
        weight = 1 - min(0.5, (1 + step) / (10 + step))
        ema = {k: torch.lerp(v, after[k], weight) for k, v in ema.items()}
    shipped = load_file(tmp_path / "tiny.safetensors")
    assert shipped.keys() == ema.keys() and all(torch.equal(shipped[k], v) for k, v in ema.items())


def test_a_checkpoint_from_before_the_averaged_model_resumes_exactly(photos, tmp_path):
    """Checkpoints written while the EMA was a plain copy of the network (its state dict alone) still resume."""
    trainer(photos, "train.steps=10").fit(tmp_path / "whole")
    trainer(photos, "train.steps=5").fit(tmp_path / "old")
    ckpt = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)
    ckpt["ema"] = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k != "n_averaged"}
    torch.save(ckpt, tmp_path / "old" / "checkpoint.pt")
    trainer(photos, "train.steps=10").fit(tmp_path / "old")
    shipped = [(tmp_path / run / "tiny.safetensors").read_bytes() for run in ("old", "whole")]
    assert shipped[0] == shipped[1]
