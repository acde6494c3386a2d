#!/usr/bin/env bash
# Every GPU check and timing of dps-exp in one call (about 10 minutes on an H200 by the first call's timings;
# SECTIONS="sync layout sweep cudnn paper", what is still open, about 7).
#   here:    bash scripts/fetch_gpu_wheels.sh
#   device:  run(command='SECTIONS="sync layout sweep cudnn paper" bash scripts/gpu_check.sh', carry=[".whl"], timeout_s=540)
# Prints the tables and writes them, with raw JSON lines, under $OUT (or ./gpu_out).
# A dry run of the plumbing on a CPU: DEVICE=cpu SIZE=32 STEPS=2 bash scripts/gpu_check.sh
# Some sections only: SECTIONS="sync layout" bash scripts/gpu_check.sh
set -uo pipefail
OUT=${OUT:-gpu_out} DEVICE=${DEVICE:-cuda} SIZE=${SIZE:-256} STEPS=${STEPS:-10}
SECTIONS=${SECTIONS:-sync layout bench compile sweep paper cudnn}
export DEVICE SIZE
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled HF_HUB_OFFLINE=1 PYTHONPATH=$PWD
if [[ $DEVICE == cuda ]] && ls .whl/*.whl >/dev/null 2>&1; then  # the device image's wheels (its Python's)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
report=$OUT/gpu_check.md
if [[ $DEVICE == cuda ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$report"
else
  echo "dry run on the CPU: $(python3 -c 'import platform; print(platform.processor() or platform.machine())')" | tee "$report"
fi

# sync: the sampler runs on CUDA, stays finite, is batch invariant, and never syncs with the host inside the
# loop: set_sync_debug_mode("error") turns any sync into an exception. It is switched on by the first step's
# callback, so the setup before the loop (tables computed once, copied to the device) is not counted.
want sync && timeout 120 python3 - <<'PY' 2>&1 | tee -a "$report"
import os
import torch
from dps_exp import batch
from dps_exp.denoisers.pretrained import RandomADM
from dps_exp.physics import RandomInpainting
from dps_exp.samplers.dps import DPS
from dps_exp.schedule import LinearSchedule
dev, n = os.environ["DEVICE"], int(os.environ["SIZE"])
sync_debug = torch.cuda.set_sync_debug_mode if dev == "cuda" else lambda mode: None
sched = LinearSchedule().to(dev)
prior = RandomADM(sched).to(dev).eval().requires_grad_(False)
x = torch.rand(4, 3, n, n, device=dev) * 2 - 1
phys = RandomInpainting(mask=torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)).draw(x.shape, batch.generators([0]*4, range(4), "op"), dev)
y = phys.measure(x, batch.generators([0]*4, range(4), "m"))
def run(idx, variance, check=False):
    gens = batch.generators([0]*len(idx), idx, "sampler", dev)
    p = RandomInpainting(mask=phys.mask[idx] if len(idx) > 1 else float(phys.mask[idx[0]])); p.m = phys.m[idx]
    checked = lambda i, x, x0: sync_debug("error") if check and i == 0 else None
    return DPS(steps=20, variance=variance).sample(y[idx], p, prior, sched, noise=lambda: batch.randn((len(idx), 3, n, n), gens), callback=checked)
DPS(steps=2).sample(y, phys, prior, sched, noise=lambda: torch.randn_like(x))  # warm up outside the check
together = run([0, 1, 2, 3], "learned", check=True)
sync_debug("default")
alone = run([2], "learned")
print(f"sync check on {dev}: passed (no host sync in steps 2-20 of 20 learned-variance steps at batch 4)")
print(f"finite: {bool(torch.isfinite(together.x).all())}, diverged: {together.diverged_at.tolist()}")
print(f"batch invariance on {dev}, max |Δ| = {(together.x[2] - alone.x[0]).abs().max().item():.2e}")
PY

# One DPS step against the tutorial's loop (FFHQ UNet, random weights), each configuration in its own process
# (~20 s each on an H200, compiled ~150 s). In order of what is still open (docs/performance.md, GPU):
# layout: channels_last on and off, eager (on was slower than the tutorial there); bench: the product's default
# layout at batch 1-32; compile: batch 32 compiled, the candidate for under 3 s per image per 1000 steps.
bench=(python3 scripts/bench.py --device "$DEVICE" --size "$SIZE" --steps "$STEPS" --repeats 3 --out "$OUT/bench.jsonl")
want layout && timeout 150 "${bench[@]}" --batch ${LAYOUT_BATCHES:-8} --tutorial-batch 8 --precision fp32 bf16 \
  --channels-last on off 2>>"$OUT/log.txt" | tee -a "$report"
want bench && timeout 150 "${bench[@]}" --batch 1 16 32 --tutorial-batch 1 --precision bf16 --channels-last off \
  2>>"$OUT/log.txt" | tee -a "$report"
want compile && timeout 200 "${bench[@]}" --batch 32 --tutorial-batch 1 --precision bf16 --channels-last off \
  --compile on --warmup 3 2>>"$OUT/log.txt" | tee -a "$report"

# sweep: a 16-point sweep at one image per point through the CLI, vectorized against sequential,
# 100 steps (~150 s on an H200): long enough that the in-loop column, not start-up, decides the ratio.
want sweep && timeout 240 python3 scripts/bench.py --sweep 16 1 --device "$DEVICE" --size "$SIZE" --steps $((STEPS * 10)) \
  --precision bf16 2>>"$OUT/log.txt" | tee -a "$report"

# cudnn: torch.backends.cudnn.benchmark (cuDNN times its algorithms for the loop's fixed shapes), eager.
want cudnn && timeout 100 "${bench[@]}" --batch 8 --tutorial-batch 8 --precision bf16 --channels-last off \
  --cudnn-benchmark off on 2>>"$OUT/log.txt" | tee -a "$report"

# paper: a paper task end to end through the CLI (random-weight prior, so the metrics mean nothing): wall time.
want paper || exit 0
run_dir=$(mktemp -d)
timeout 100 python3 -m dps_exp.run experiment=paper/ffhq_sr4 denoiser=random_adm data=sample data.limit=4 \
  data.batch_size=4 data.size="$SIZE" sampler.steps=$((STEPS * 25)) device="$DEVICE" precision=bf16 logger=none \
  metrics.names=[psnr,ssim] progress=false hydra.run.dir="$run_dir" 2>>"$OUT/log.txt" | tail -2 | tee -a "$report"
python3 - "$run_dir/summary.json" <<'PY' 2>&1 | tee -a "$report"
import json, sys
s = json.load(open(sys.argv[1]))
steps = s["config"]["sampler"]["steps"]
per = s["wall_time_s"] / 4 * 1000 / steps
print(f"paper/ffhq_sr4 via the CLI, 4 images at batch 4, {steps} steps, bf16: {s['wall_time_s']:.1f} s wall "
      f"(model build included), {per:.1f} s per image per 1000 steps")
PY
