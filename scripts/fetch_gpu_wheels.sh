#!/usr/bin/env bash
# Download the wheels the GPU machine's image lacks (it has torch, torchvision, torchmetrics, huggingface_hub,
# matplotlib, tqdm; not Hydra, OmegaConf, W&B or deepinv) into .whl/ (git-ignored), for Python 3.12 x86-64.
# Then carry .whl with the device call: run(command="bash scripts/gpu_check.sh", carry=[".whl"]).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
for pkg in hydra-core==1.3.2 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 PyYAML deepinv==0.4.0 natsort einops; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl "$pkg" \
    || python3 -m pip download -q --no-deps --python-version 3.12 -d .whl "$pkg"
done
# An sdist (antlr4's runtime has no wheel) is built into a pure-Python wheel here: the device installs wheels only.
for sdist in .whl/*.tar.gz; do
  [ -e "$sdist" ] || continue
  python3 -m pip wheel -q --no-deps -w .whl "$sdist" && rm "$sdist"
done
ls -la .whl
