#!/usr/bin/env bash
# Every GPU check and timing of dps-exp in calls of at most BUDGET seconds (470: 8 minutes with set-up); all the
# sections take two calls: the default, then SECTIONS="continuous samplers" (a section that does not fit is skipped).
#   here:    bash scripts/fetch_gpu_wheels.sh
#   device:  run(command='bash scripts/gpu_check.sh', carry=[".whl"], timeout_s=560)
# Prints the figures and appends each, as soon as it is measured, to $OUT/gpu_check.md (raw JSON lines beside it).
# Sections, in the order they run (SECTIONS="..." for some; docs/performance.md, "Fast defaults", says what each
# figure decides):
#   sync     the loop never syncs with the host (set_sync_debug_mode("error")), stays finite, is batch invariant
#   bf16     bf16 against fp32: mean |ΔPSNR| on the natural32 demo, the GMM test bed's posterior metrics
#   layout   eager step at batch 8: fp32 and bf16 contiguous, bf16 channels_last, bf16 with cudnn.benchmark
#   compile  compiled bf16 step at batch $COMPILE_BATCH: cold compilation (first job), then from the cache (second)
#   graphs   batch-1 CUDA graphs (compile=graphs), cold then from the cache
#   paper    experiment=paper/ffhq_sr4 denoiser=random_adm, 4 images, through the CLI with the auto settings
#   sweep    a 16-point sweep at 100 steps through the CLI, vectorized against sequential, wall and in-loop
#   continuous  sampler.steps=50,100,250,500,1000 (divided by CONT_SCALE) × 2 η, run three ways: continuous
#            batching, packed per steps value, sequential; the same rows from each (bench.py --continuous)
#   samplers every sampler's seconds per sample and per network evaluation on a task it supports (--samplers all)
# The cold compilations run in the background while sync and bf16 (results, not timings) run; the timed sections
# start once they are done. A section that would not finish within the budget is skipped, saying so.
# The CPU dry run of every section at toy sizes, compilation disabled (a few minutes on a shared 2-core machine):
#   DEVICE=cpu bash scripts/gpu_check.sh
# PY (default python3) runs every Python step: tests/test_gpu_check.py sets it to a recorder and checks what each
# section would run (arguments, configs, its Python) in seconds.
set -uo pipefail
DEVICE=${DEVICE:-cuda}
if [[ $DEVICE == cpu ]]; then  # the dry run: toy sizes, the plumbing only (the figures mean nothing)
  SIZE=${SIZE:-32} STEPS=${STEPS:-1} ARCH=${ARCH:-tiny} COMPILE_BATCH=${COMPILE_BATCH:-2} SWEEP=${SWEEP:-2}
  SWEEP_STEPS=${SWEEP_STEPS:-2} DEMO_STEPS=${DEMO_STEPS:-2} SYNC_STEPS=${SYNC_STEPS:-2} PAPER_STEPS=${PAPER_STEPS:-2}
  CONT_SCALE=${CONT_SCALE:-100} CONT_DENOISER=${CONT_DENOISER:-natural32} SAMPLER_BATCH=${SAMPLER_BATCH:-1}
  BUDGET=${BUDGET:-3600} SLOW=${SLOW:-10}  # a shared 2-core CPU compiles and starts processes slowly
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread per process: threads waiting on each other under load
  # torch.compile runs as eager here (the sections' plumbing is what a dry run checks; compiling on a CPU is tested
  # by tests/test_compile_cache.py and tests/test_speed_options.py): TORCH_COMPILE_DISABLE=0 compiles for real
  export TORCH_COMPILE_DISABLE=${TORCH_COMPILE_DISABLE:-1}
else
  SIZE=${SIZE:-256} STEPS=${STEPS:-5} ARCH=${ARCH:-ffhq} COMPILE_BATCH=${COMPILE_BATCH:-32} SWEEP=${SWEEP:-16}
  SWEEP_STEPS=${SWEEP_STEPS:-100} DEMO_STEPS=${DEMO_STEPS:-300} SYNC_STEPS=${SYNC_STEPS:-20} PAPER_STEPS=${PAPER_STEPS:-250}
  # the heterogeneous sweep's steps ÷ 5 (10-200: about 100 s for its three ways; CONT_SCALE=1, the sweep as
  # written, about 5 minutes: SECTIONS=continuous alone); the samplers at batch 1 and 16
  CONT_SCALE=${CONT_SCALE:-5} CONT_DENOISER=${CONT_DENOISER:-random_adm} SAMPLER_BATCH=${SAMPLER_BATCH:-1 16}
fi
OUT=${OUT:-gpu_out} BUDGET=${BUDGET:-470} SLOW=${SLOW:-1} PY=${PY:-python3} CONT_IMAGES=${CONT_IMAGES:-1}
SECTIONS=${SECTIONS:-sync bf16 layout compile graphs paper sweep continuous samplers}
export DEVICE SIZE SYNC_STEPS DEMO_STEPS
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
mkdir -p "$OUT"
report=$OUT/gpu_check.md
say() { tee -a "$report"; }
# section NAME SECONDS: whether NAME is asked for and, about SECONDS long, fits in what is left of the budget (if
# not, it says it is skipped and what to run next)
section() {
  want "$1" || return 1
  local left=$((BUDGET - SECONDS))
  if ((left < $2)); then
    echo "skipped $1: it needs about $2 s and $left s of the $BUDGET s budget are left (run SECTIONS=\"$1\" next)" | say
    return 1
  fi
}
failed=()
limit() { local left=$((BUDGET - SECONDS)) t=$(($1 * SLOW)); echo $((t < left ? t : left)); }  # a section's timeout

export PYTHONUNBUFFERED=1 WANDB_MODE=disabled HF_HUB_OFFLINE=1 PYTHONPATH=$PWD
if [[ $DEVICE == cuda ]] && ls .whl/*.whl >/dev/null 2>&1; then  # the device image's wheels (its Python's)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
# One fresh compile cache for the call (a cold first compilation), shared by every process of it (the second
# compilation of the same network and shapes comes from it): what a run does with $DPS_CACHE/compile.
export DPS_CACHE=${DPS_CACHE:-$(mktemp -d)}
export TORCHINDUCTOR_CACHE_DIR=$DPS_CACHE/compile
if [[ $DEVICE == cuda ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | say
else
  echo "dry run on the CPU: $("$PY" -c 'import platform; print(platform.processor() or platform.machine())')" | say
fi
"$PY" -c 'import torch; print(f"torch {torch.__version__}")' | say

bench=("$PY" scripts/bench.py --device "$DEVICE" --size "$SIZE" --steps "$STEPS" --repeats 2)
ours=(--arch "$ARCH" --tutorial-batch --precision bf16 --channels-last on)
# Cold compilations, in the background: each bench process's warm-up (2 steps) includes its compilation.
cold=()
if want compile; then
  timeout "$(limit 300)" "${bench[@]}" "${ours[@]}" --batch "$COMPILE_BATCH" --compile on --warmup 2 --steps 1 --repeats 1 \
    --out "$OUT/cold.jsonl" >/dev/null 2>>"$OUT/log.txt" & cold+=($!)
fi
if want graphs; then
  timeout "$(limit 300)" "${bench[@]}" "${ours[@]}" --batch 1 --compile graphs --warmup 2 --steps 1 --repeats 1 \
    --out "$OUT/cold.jsonl" >/dev/null 2>>"$OUT/log.txt" & cold+=($!)
fi

section sync 40 && { timeout "$(limit 60)" "$PY" - <<'PY' 2>&1 | say || failed+=(sync); }
# The sampler on the device: finite, batch invariant, and no host sync inside the loop: set_sync_debug_mode("error")
# turns any sync into an exception. It is switched on by the first step's callback, so the set-up before the
# loop (tables computed once, copied to the device) is not counted.
import os
import torch
from dps_exp import batch
from dps_exp.denoisers.pretrained import RandomADM
from dps_exp.physics import RandomInpainting
from dps_exp.samplers.dps import DPS
from dps_exp.schedule import LinearSchedule
dev, n, steps = os.environ["DEVICE"], int(os.environ["SIZE"]), int(os.environ["SYNC_STEPS"])
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
    return DPS(steps=steps, variance=variance).sample(y[idx], p, prior, sched, noise=lambda: batch.randn((len(idx), 3, n, n), gens), callback=checked)
DPS(steps=2).sample(y, phys, prior, sched, noise=lambda: torch.randn_like(x))  # warm up outside the check
together = run([0, 1, 2, 3], "learned", check=True)
sync_debug("default")
alone = run([2], "learned")
print(f"sync check on {dev}: passed (no host sync in steps 2-{steps} of {steps} learned-variance steps at batch 4)")
print(f"finite: {bool(torch.isfinite(together.x).all())}, diverged: {together.diverged_at.tolist()}")
print(f"batch invariance on {dev}, max |Δ| = {(together.x[2] - alone.x[0]).abs().max().item():.2e}")
PY

section bf16 60 && { timeout "$(limit 90)" "$PY" - "$OUT/bf16.json" <<'PY' 2>>"$OUT/log.txt" | say || failed+=(bf16); }
# What bf16 changes in results, against fp32, the rest alike (eager, contiguous): per image, the natural32 demo's
# PSNR (the bundled trained prior; speed.BF16_PSNR_CHANGE_DB takes the mean |Δ|, against a tolerance of 0.05 dB);
# the GMM test bed's posterior metrics (4 draws per image scored against the exact posterior).
import json, logging, os, statistics, sys, tempfile
from pathlib import Path
logging.disable(logging.WARNING)
from dps_exp.run.cli import compose
from dps_exp.run.experiment import Run
dev, steps = os.environ["DEVICE"], os.environ["DEMO_STEPS"]
common = ["logger=none", "progress=false", f"device={dev}", "compile=false", "channels_last=false"]
tasks = {
    "natural32 demo": ["experiment=demo", f"sampler.steps={steps}"],
    "gmm test bed": ["denoiser=gmm", "data=prior_samples", "data.count=8", "metrics.names=[psnr]", "samples=4",
                     f"sampler.steps={steps}", "sampler.step_size=0.5"],
}
out = {}
for name, overrides in tasks.items():
    rows = {}
    for precision in ("fp32", "bf16"):
        with tempfile.TemporaryDirectory() as tmp:
            Run(compose([*overrides, *common, f"precision={precision}"]), Path(tmp)).execute()
            rows[precision] = [json.loads(line)["metrics"] for line in (Path(tmp) / "results.jsonl").read_text().splitlines()]
    changes = {k: statistics.fmean(abs(a[k] - b[k]) for a, b in zip(rows["fp32"], rows["bf16"]))
               for k in rows["fp32"][0] if all(isinstance(r.get(k), float) for r in rows["fp32"] + rows["bf16"])}
    out[name] = changes
    print(f"bf16 against fp32 on {dev}, {name} ({len(rows['fp32'])} images, {steps} steps), mean |Δ| per image: "
          + ", ".join(f"{k} {v:.4f}" for k, v in changes.items()))
json.dump(out, open(sys.argv[1], "w"), indent=1)
PY

if ((${#cold[@]})); then
  for pid in "${cold[@]}"; do wait "$pid" || failed+=("cold compilation")
  done
  "$PY" - "$OUT/cold.jsonl" <<'PY' 2>&1 | say
import json, sys
from pathlib import Path
path = Path(sys.argv[1])
for r in map(json.loads, path.read_text().splitlines() if path.exists() else []):
    print(f"cold compilation (first job; beside the sync and bf16 sections): compile={r['compile']}, batch {r['batch']}, "
          f"{r['precision']}: {r['warmup_s']:.1f} s for the compilation and 2 steps")
PY
fi

# Eager step at batch 8, each configuration in its own process; the tutorial's loop at batch 8 for reference.
if section layout 100; then
  timeout "$(limit 110)" "${bench[@]}" --arch "$ARCH" --batch 8 --tutorial-batch $([[ $ARCH == tiny ]] || echo 8) \
    --precision fp32 bf16 --channels-last off --warmup 2 --out "$OUT/bench.jsonl" 2>>"$OUT/log.txt" | say || failed+=(layout)
  for option in "--channels-last on" "--cudnn-benchmark on"; do
    timeout "$(limit 40)" "${bench[@]}" --arch "$ARCH" --batch 8 --tutorial-batch --precision bf16 --channels-last off \
      $option --warmup 2 --out "$OUT/bench.jsonl" 2>>"$OUT/log.txt" | grep '^| ours' | say || failed+=("layout $option")
  done
fi
# From the cache the cold jobs filled: the warm-up is the second job's compilation; the rows are clean timings.
section compile 50 && { timeout "$(limit 100)" "${bench[@]}" "${ours[@]}" --batch "$COMPILE_BATCH" --compile on \
  --warmup 2 --out "$OUT/bench.jsonl" 2>>"$OUT/log.txt" | say || failed+=(compile); }
section graphs 50 && { timeout "$(limit 100)" "${bench[@]}" "${ours[@]}" --batch 1 --compile graphs --warmup 2 \
  --out "$OUT/bench.jsonl" 2>>"$OUT/log.txt" | say || failed+=(graphs); }

# A paper task end to end through the CLI, with the product's auto settings (its speed line says what they chose).
if section paper 45; then
  run_dir=$(mktemp -d)
  timeout "$(limit 90)" "$PY" -m dps_exp.run experiment=paper/ffhq_sr4 denoiser=random_adm data=sample data.limit=4 \
    data.size="$SIZE" sampler.steps="$PAPER_STEPS" device="$DEVICE" logger=none metrics.names=[psnr,ssim] progress=false \
    hydra.run.dir="$run_dir" >>"$OUT/log.txt" 2>&1 || failed+=(paper)
  grep -ho "speed on .*" "$run_dir/run.log" | say
  "$PY" - "$run_dir/summary.json" <<'PY' 2>&1 | say || failed+=(paper)
import json, sys
s = json.load(open(sys.argv[1]))
steps, n = s["config"]["sampler"]["steps"], s["rows"]
print(f"paper/ffhq_sr4 via the CLI, {n} images, {steps} steps, auto settings: {s['wall_time_s']:.1f} s in the run "
      f"(probe and model build included), {s['wall_time_s'] / n * 1000 / steps:.1f} s per image per 1000 steps")
PY
fi

# A SWEEP-point sweep at one image per point, vectorized (one job) against sequential (SWEEP jobs), bf16.
section sweep 150 && { timeout "$(limit 240)" "$PY" scripts/bench.py --sweep "$SWEEP" 1 --device "$DEVICE" \
  --size "$SIZE" --steps "$SWEEP_STEPS" --precision bf16 2>>"$OUT/log.txt" | say || failed+=(sweep); }
# The heterogeneous sweep (FFHQ UNet, random weights; the run's auto batch and precision), three ways.
section continuous 120 && { timeout "$(limit 240)" "$PY" scripts/bench.py --continuous "$CONT_IMAGES" --scale "$CONT_SCALE" \
  --denoiser "$CONT_DENOISER" --device "$DEVICE" --size "$SIZE" 2>>"$OUT/log.txt" | say || failed+=(continuous); }
# Every sampler on a task it supports, one process, one network for all; eager contiguous fp32 (what auto runs on
# CUDA today: channels_last is slower eager there).
section samplers 60 && { timeout "$(limit 120)" "${bench[@]}" --arch "$ARCH" --tutorial-batch --samplers all \
  --batch $SAMPLER_BATCH --precision fp32 --channels-last off --warmup 1 --out "$OUT/samplers.jsonl" 2>>"$OUT/log.txt" | say \
  || failed+=(samplers); }
echo "gpu_check: done in $SECONDS s (budget $BUDGET s); sections: $SECTIONS" | say
if ((${#failed[@]})); then
  echo "gpu_check: failed: ${failed[*]} (their errors are in $OUT/log.txt)" | say
  exit 1
fi
