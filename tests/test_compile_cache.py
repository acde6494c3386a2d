"""Compiled kernels persist in the documented cache directory, keyed so that a compilation of the same network
at the same batch shape reuses them (a sequential sweep compiles once) and another batch shape does not.

On the CPU (inductor's C++ backend) with a one-conv network: about 25 s on the shared 2-core machine (a load
average of 6), most of it g++ (inductor's probes of the CPU's vector instructions, then about a second per
generated kernel, forward and backward, at each of the two shapes compiled) and importing inductor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.helpers import ROOT

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from torch import nn
    from dps_exp.denoisers.base import NetworkDenoiser
    from dps_exp.run.acceleration import use_compile_cache
    from dps_exp.schedule import LinearSchedule

    cache = use_compile_cache()  # what a run does before compiling

    class Net(nn.Module):  # one conv: each generated kernel costs a g++ call of about a second on a shared CPU
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x, t):
            return self.conv(x)

    def compiled_step(batch):
        torch.manual_seed(0)
        prior = NetworkDenoiser(LinearSchedule(), Net()).eval().requires_grad_(False)  # a new module each time
        prior.accelerate(compile=True)
        x = torch.randn(batch, 3, 8, 8, requires_grad=True)
        (g,) = torch.autograd.grad(prior(x, torch.full((batch,), 10)).x0.sum(), x)
        torch.compiler.reset()  # forget the compiled code in memory, as a new process would
        return {str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and "lock" not in p.name}

    first = compiled_step(2)
    again = compiled_step(2)
    other = compiled_step(3)
    print(json.dumps({"cache": str(cache), "first": sorted(first), "again": sorted(again - first),
                      "other": sorted(other - again)}))
    """
)


def test_a_second_compilation_of_the_same_key_reuses_the_cached_kernels(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    env["DPS_CACHE"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["cache"] == str(tmp_path / "cache" / "compile")  # $DPS_CACHE/compile, as documented
    assert any(f.startswith("fxgraph/") for f in found["first"])  # inductor's graph cache is there
    assert any(f.startswith("aotautograd/") for f in found["first"])  # and the forward + backward's
    assert found["again"] == []  # the same network at the same shape: nothing compiled anew
    assert any(f.startswith("fxgraph/") for f in found["other"])  # another batch shape is another key
