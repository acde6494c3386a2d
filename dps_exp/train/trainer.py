"""Train an ADM UNet as an ε-prediction DDPM prior on the linear schedule: resumable, seeded, logged.

The whole state that decides the next step (network, EMA, optimizer, step, the one random generator that
draws crops, timesteps and noise) is checkpointed, so an interrupted run resumed from its last checkpoint
continues the loss curve of an uninterrupted one exactly (on the same machine and thread count).

Outputs in the run directory: `checkpoint.pt` (every `checkpoint_every` steps), `loss.csv`, and at the end
`NAME.safetensors` (the EMA weights) with its card `NAME.json` (architecture, data, steps, loss, sha256).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from dps_exp.config import Range
from dps_exp.denoisers.adm import ADMConfig, ADMUNet, count_parameters
from dps_exp.denoisers.weights import file_sha256
from dps_exp.errors import ConfigError, UserError
from dps_exp.run.signals import signals_held
from dps_exp.schedule import LinearSchedule
from dps_exp.train.crops import PhotoCrops

log = logging.getLogger(__name__)
CHECKPOINT, LOSSES = "checkpoint.pt", "loss.csv"
CARD_FORMAT = "dps-exp prior card 1"


def warmed_up_ema(decay: float):
    """AveragedModel's `multi_avg_fn` for an EMA whose decay warms up: the n-th average after the initial copy
    (n = `n_averaged`, 1 for the first training step) uses min(decay, n / (9 + n)), i.e. (1 + s) / (10 + s) at
    step s, so a short training does not ship mostly its random initialisation."""

    def update(ema_params, params, n_averaged) -> None:
        n = int(n_averaged)
        get_ema_multi_avg_fn(min(decay, n / (9 + n)))(ema_params, params, n_averaged)

    return update


def machine() -> str:
    """The CPU model and core count, for cards and docs (timings are only comparable on the same machine)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} CPUs visible, {platform.system()}"


class Trainer:
    """ε-prediction DDPM training: t ~ U{0..T−1}, x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε, loss ‖ε̂(x_t, t) − ε‖² (mean).

    AdamW with a linear warm-up to `lr`, gradient-norm clipping, and an EMA of the weights (the EMA is what
    ships). `steps` bounds the step count and `max_minutes` the wall time (summed over resumes), whichever
    comes first. `precision=bf16` runs the network under CPU/GPU bf16 autocast (the loss is fp32).

    Args:
        name: names the output files
        steps: at most this many steps
        max_minutes: wall-time budget in minutes summed over resumes (null: none); whichever of the two ends first
        batch_size: crops per step
        lr: AdamW learning rate after warm-up
        warmup: linear warm-up steps
        weight_decay: AdamW weight decay
        grad_clip: gradient-norm clip
        ema: EMA decay (`torch.optim.swa_utils.AveragedModel`, from the initial weights), min(ema, (1 + n)/(10 + n))
            at step n: a warm-up early on
        precision: `bf16` (autocast around the network, ~1.9× faster on CPUs with bf16 instructions) or `fp32`
        threads: `torch.set_num_threads` (null: torch's default)
        seed: seeds the initial weights and the one generator that draws crops, timesteps and noise
        checkpoint_every: steps between checkpoints
        log_every: steps per `loss.csv` row
        resume: a `checkpoint.pt` or a run directory to continue from
        progress: progress bar
    """

    def __init__(
        self,
        data: PhotoCrops,
        architecture: ADMConfig,
        name: str = "prior",
        steps: Annotated[int, Range(1, None)] = 10000,
        max_minutes: Annotated[float, Range(0, None, lo_open=True)] | None = None,
        batch_size: Annotated[int, Range(1, None)] = 64,
        lr: Annotated[float, Range(0, None, lo_open=True)] = 5e-4,
        warmup: Annotated[int, Range(0, None)] = 500,
        weight_decay: Annotated[float, Range(0, None)] = 0.0,
        grad_clip: Annotated[float, Range(0, None, lo_open=True)] = 1.0,
        ema: Annotated[float, Range(0, 1, hi_open=True)] = 0.999,
        precision: Literal["fp32", "bf16"] = "bf16",
        threads: Annotated[int, Range(1, None)] | None = 2,
        seed: Annotated[int, Range(0, None)] = 0,
        checkpoint_every: Annotated[int, Range(1, None)] = 500,
        log_every: Annotated[int, Range(1, None)] = 10,
        resume: str | None = None,
        progress: bool = True,
    ):
        self.data, self.cfg, self.name = data, ADMConfig.from_dict(architecture), name
        self.cfg.check("train.architecture")
        if data.crop != self.cfg.image_size:  # the card's image size, and where attention sits, follow it
            raise ConfigError(
                f"train.data.crop={data.crop} differs from train.architecture.image_size={self.cfg.image_size}: "
                "set both to the size the prior is trained at"
            )
        self.steps, self.max_minutes, self.batch_size = steps, max_minutes, batch_size
        self.lr, self.warmup, self.weight_decay, self.grad_clip = lr, warmup, weight_decay, grad_clip
        self.ema_decay, self.precision, self.threads, self.seed = ema, precision, threads, seed
        self.checkpoint_every, self.log_every, self.resume, self.progress = (
            checkpoint_every,
            log_every,
            resume,
            progress,
        )
        self.schedule = LinearSchedule()
        ab = self.schedule.alphas_cumprod.float()
        self.sqrt_ab, self.sqrt_1m_ab = ab.sqrt(), (1 - ab).sqrt()

    # -----------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Fresh state: network (seeded init), EMA copy, optimizer, the generator, step 0."""
        if self.threads:
            torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)  # the initial weights; everything after draws from self.gen
        self.net = ADMUNet(self.cfg)
        self.ema = AveragedModel(self.net, multi_avg_fn=warmed_up_ema(self.ema_decay)).requires_grad_(False)
        self.ema.update_parameters(self.net)  # the average starts at the initial weights (n_averaged = 1)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.gen = torch.Generator().manual_seed(self.seed)
        self.step, self.elapsed, self.loss_ema = 0, 0.0, None
        self.window: list[float] = []  # losses since the last log row

    def state(self) -> dict:
        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "loss_ema": self.loss_ema,
            "window": self.window,
            "net": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "gen": self.gen.get_state(),
            "architecture": self.cfg.to_dict(),
        }

    def load(self, path: Path) -> None:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt["architecture"] != self.cfg.to_dict():
            raise UserError(f"{path} was trained with another train.architecture; resume it with the same one")
        self.net.load_state_dict(ckpt["net"])
        ema = ckpt["ema"]
        if "n_averaged" not in ema:  # written before the EMA was an AveragedModel: the averaged weights alone
            ema = {f"module.{k}": v for k, v in ema.items()} | {"n_averaged": torch.tensor(ckpt["step"] + 1)}
        self.ema.load_state_dict(ema)
        self.opt.load_state_dict(ckpt["opt"])
        self.gen.set_state(ckpt["gen"])
        self.step, self.elapsed, self.loss_ema = ckpt["step"], ckpt["elapsed"], ckpt["loss_ema"]
        self.window = list(ckpt["window"])

    def save(self, out: Path) -> None:
        tmp = out / (CHECKPOINT + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, out / CHECKPOINT)  # atomic: a kill mid-save leaves the previous checkpoint

    def learning_rate(self, step: int) -> float:
        return self.lr * min(1.0, (step + 1) / self.warmup) if self.warmup else self.lr

    def train_step(self) -> float:
        """One optimizer step on a fresh batch; returns the batch loss."""
        x0 = self.data.sample(self.batch_size, self.gen)
        t = torch.randint(0, self.schedule.num_train_steps, (self.batch_size,), generator=self.gen)
        eps = torch.randn(x0.shape, generator=self.gen)
        x_t = self.sqrt_ab[t].view(-1, 1, 1, 1) * x0 + self.sqrt_1m_ab[t].view(-1, 1, 1, 1) * eps
        with torch.autocast("cpu", torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.net(x_t, t)
        loss = F.mse_loss(out.float(), eps)
        for group in self.opt.param_groups:
            group["lr"] = self.learning_rate(self.step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.opt.step()
        self.ema.update_parameters(self.net)  # decay min(ema, (1 + step) / (10 + step)): `warmed_up_ema`
        self.step += 1
        value = loss.item()
        self.loss_ema = value if self.loss_ema is None else 0.99 * self.loss_ema + 0.01 * value
        return value

    # -----------------------------------------------------------------------------------------------------

    def fit(self, out_dir: Path) -> dict:
        """Train into `out_dir` (continuing its checkpoint, or `resume`'s, when there is one); returns the card."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.setup()
        source = self.resume_source(out)
        if source is not None:
            self.load(source)
            log.info("resuming from %s at step %d", source, self.step)
        self.trim_log(out, source)
        budget = self.max_minutes * 60 if self.max_minutes else float("inf")
        tic = time.perf_counter() - self.elapsed
        self.net.train()
        with (
            tqdm(total=self.steps, initial=self.step, desc="train", disable=not self.progress) as bar,
            (out / LOSSES).open("a", newline="") as f,
        ):
            writer = csv.writer(f)
            if f.tell() == 0:
                writer.writerow(["step", "loss", "loss_ema", "lr", "elapsed_s"])
            while self.step < self.steps and self.elapsed < budget:
                interrupted = None
                try:
                    with signals_held():  # Ctrl-C / SIGTERM wait for the step (and its log row): a checkpoint
                        self.window.append(self.train_step())  # holds whole steps
                except KeyboardInterrupt as err:
                    interrupted = err
                self.elapsed = time.perf_counter() - tic
                if self.step % self.log_every == 0 or self.step == self.steps:
                    lr = self.learning_rate(self.step - 1)
                    writer.writerow([self.step, sum(self.window) / len(self.window), self.loss_ema, lr, self.elapsed])
                    f.flush()
                    self.window.clear()
                    bar.set_postfix(loss=f"{self.loss_ema:.4f}")
                if self.step % self.checkpoint_every == 0 or interrupted:
                    self.save(out)
                if interrupted:
                    log.error("interrupted at step %d: checkpoint saved in %s; run the same command (or "
                              "train.resume=%s) to continue", self.step, out, out)  # fmt: skip
                    raise interrupted
                bar.update(1)
        self.save(out)
        return self.export(out)

    def resume_source(self, out: Path) -> Path | None:
        if self.resume:
            path = Path(self.resume).expanduser()
            path = path / CHECKPOINT if path.is_dir() else path
            if not path.is_file():
                raise UserError(f"train.resume={self.resume!r}: no checkpoint there")
            return path
        return out / CHECKPOINT if (out / CHECKPOINT).is_file() else None

    def trim_log(self, out: Path, source: Path | None) -> None:
        """The loss log up to the checkpoint's step: rows logged after it are recomputed, never doubled."""
        old = (source.parent if source else out) / LOSSES
        rows = list(csv.reader(old.open())) if old.is_file() else []
        keep = [r for r in rows[1:] if source is not None and int(r[0]) <= self.step]
        with (out / LOSSES).open("w", newline="") as f:
            csv.writer(f).writerows(([rows[0]] if keep else []) + keep)

    def export(self, out: Path) -> dict:
        """Write the EMA weights as safetensors and the card beside them; returns the card."""
        weights = out / f"{self.name}.safetensors"
        save_file({k: v.contiguous() for k, v in self.ema.module.state_dict().items()}, str(weights))
        card = {
            "format": CARD_FORMAT,
            "name": self.name,
            "network": "dps_exp.denoisers.adm.ADMUNet",
            "parameterisation": "epsilon (fixed variance: sample with sampler.variance=eta)",
            "schedule": {
                "kind": "linear",
                "beta_start": float(self.schedule.betas[0]),
                "beta_end": float(self.schedule.betas[-1]),
                "num_train_steps": self.schedule.num_train_steps,
            },
            "architecture": self.cfg.to_dict(),
            "parameters": count_parameters(self.ema.module),
            "data": self.data.describe(),
            "training": {
                "steps": self.step,
                "batch_size": self.batch_size,
                "lr": self.lr,
                "warmup": self.warmup,
                "weight_decay": self.weight_decay,
                "grad_clip": self.grad_clip,
                "ema": self.ema_decay,
                "precision": self.precision,
                "threads": self.threads,
                "seed": self.seed,
            },
            "loss": {"ema_0.99": self.loss_ema},
            "wall_time_s": round(self.elapsed, 1),
            "machine": machine(),
            "torch": torch.__version__,
            "weights": {"file": weights.name, "bytes": weights.stat().st_size, "sha256": file_sha256(weights)},
        }
        (out / f"{self.name}.json").write_text(json.dumps(card, indent=2) + "\n")
        return card
