#!/usr/bin/env bash
# Every GPU check and timing of dps-exp in one call (budget: about 7 minutes on an H100 or H200).
#   here:    bash scripts/fetch_gpu_wheels.sh
#   device:  run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Prints the tables last and writes them, with raw JSON lines, under $OUT (or ./gpu_out).
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled HF_HUB_OFFLINE=1 PYTHONPATH=$PWD
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
report=$OUT/gpu_check.md
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$report"

# 1. Correctness on CUDA: the sampler runs, stays finite, is batch invariant, and syncs with the host never
#    inside the loop (set_sync_debug_mode("error") turns any device-to-host sync into an exception).
timeout 120 python3 - <<'PY' 2>&1 | tee -a "$report"
import torch
from dps_exp import batch
from dps_exp.denoisers.pretrained import RandomADM
from dps_exp.physics import RandomInpainting
from dps_exp.samplers.dps import DPS
from dps_exp.schedule import LinearSchedule
dev = "cuda"
sched = LinearSchedule().to(dev)
prior = RandomADM(sched).to(dev).eval().requires_grad_(False)
x = torch.rand(4, 3, 256, 256, device=dev) * 2 - 1
phys = RandomInpainting(mask=torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)).draw(x.shape, batch.generators([0]*4, range(4), "op"), dev)
y = phys.measure(x, batch.generators([0]*4, range(4), "m"))
def run(idx, variance):
    gens = batch.generators([0]*len(idx), idx, "sampler", dev)
    p = RandomInpainting(mask=phys.mask[idx] if len(idx) > 1 else float(phys.mask[idx[0]])); p.m = phys.m[idx]
    return DPS(steps=20, variance=variance).sample(y[idx], p, prior, sched, noise=lambda: batch.randn((len(idx), 3, 256, 256), gens))
DPS(steps=2).sample(y, phys, prior, sched, noise=lambda: torch.randn_like(x))  # warm up outside the check
torch.cuda.set_sync_debug_mode("error")
together = run([0, 1, 2, 3], "learned")
torch.cuda.set_sync_debug_mode("default")
alone = run([2], "learned")
print(f"sync check: passed (no host sync in 20 learned-variance steps at batch 4)")
print(f"finite: {bool(torch.isfinite(together.x).all())}, diverged: {together.diverged_at.tolist()}")
print(f"batch invariance on CUDA, max |Δ| = {(together.x[2] - alone.x[0]).abs().max().item():.2e}")
PY

# 2. One DPS step against the tutorial's loop at 256×256 (FFHQ UNet, random weights).
timeout 200 python3 scripts/bench.py --device cuda --size 256 --batch 1 8 16 --tutorial-batch 1 8 \
  --precision fp32 bf16 --compile off --steps 10 --repeats 3 --out "$OUT/bench.jsonl" 2>>"$OUT/log.txt" | tee -a "$report"
timeout 200 python3 scripts/bench.py --device cuda --size 256 --batch 1 16 --tutorial-batch 1 \
  --precision bf16 --compile on --steps 10 --repeats 3 --warmup 3 --out "$OUT/bench.jsonl" 2>>"$OUT/log.txt" | tee -a "$report"

# 3. A 16-point sweep at one image per point: vectorized against sequential.
timeout 150 python3 scripts/bench.py --sweep 16 1 --device cuda --size 256 --steps 50 --precision bf16 \
  2>>"$OUT/log.txt" | tee -a "$report"

# 4. One paper task on a handful of images with a random-weight prior: wall time per image.
timeout 100 python3 -m dps_exp.run experiment=paper/ffhq_sr4 denoiser=random_adm data=sample data.limit=4 \
  data.batch_size=4 metrics=default sampler.steps=250 precision=bf16 logger=none progress=false \
  hydra.run.dir="$OUT/paper_sr4" 2>>"$OUT/log.txt" | tail -2 | tee -a "$report"
python3 -c "import json; s=json.load(open('$OUT/paper_sr4/summary.json')); print(f\"paper/ffhq_sr4, 4 images, 250 steps, bf16: {s['wall_time_s']:.1f} s, {s['wall_time_s']/4*4:.1f} s per image for 1000 steps\")" | tee -a "$report"
