"""Our ADM UNet against deepinv's DiffUNet (the same architecture): keys, shapes and outputs."""

from __future__ import annotations

import copy

import pytest
import torch
from deepinv.models import DiffUNet

from dps_exp.denoisers.adm import ARCHITECTURES, ADMConfig, ADMUNet
from tests.conftest import TINY_ADM, tiny_adm_state

BUFFERS = ("sqrt_1m_alphas_cumprod", "sqrt_alphas_cumprod")  # deepinv's noise-level helpers, not weights


def random_pair(name: str):
    ref = DiffUNet(large_model=name == "imagenet", pretrained=None).eval()
    state = {k: v for k, v in ref.state_dict().items() if k not in BUFFERS}
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=gen) * 0.05 for k, v in state.items()}  # zero-init convs too
    ref.load_state_dict(state, strict=False)
    ours = ADMUNet(ARCHITECTURES[name]).eval()
    ours.load_state_dict(state, strict=True)
    return ref, ours, state


@pytest.mark.parametrize("name, size", [("ffhq", 64), ("imagenet", 32)])
def test_state_dict_keys_shapes_and_outputs_match(name, size):
    ref, ours, state = random_pair(name)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in state.items()}
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([3, 871])
    with torch.no_grad():
        expected, got = ref.forward_diffusion(x, t), ours(x, t)
    assert got.shape == (2, 6, size, size)
    rel = (got - expected).abs().max() / expected.abs().max()
    assert rel <= 1e-4, rel  # ε (channels 0-2) and the variance output v (3-5)


def test_activation_checkpointing_gives_the_same_input_gradient():
    cfg = ADMConfig(
        image_size=16, model_channels=32, channel_mult=(1, 2), attention_resolutions=(8,), num_head_channels=32
    )
    plain = ADMUNet(cfg).eval().requires_grad_(False)
    ckpt = ADMUNet(cfg, checkpointing=True).eval().requires_grad_(False)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    t = torch.tensor([5, 500])
    (g1,) = torch.autograd.grad(plain(x, t).square().sum(), x)
    (g2,) = torch.autograd.grad(ckpt(x, t).square().sum(), x)
    assert torch.allclose(g1, g2, atol=1e-5)


def test_resblock_updown_false_uses_conv_resampling_keys():
    cfg = ADMConfig(
        image_size=16, model_channels=32, channel_mult=(1, 2), attention_resolutions=(), resblock_updown=False
    )
    keys = ADMUNet(cfg).state_dict().keys()
    assert "input_blocks.2.0.op.weight" in keys and "output_blocks.1.1.conv.weight" in keys


def test_a_float64_copy_runs_in_float64():
    """The oracle tests' reference evaluation: the same weights cast to float64 run in float64 throughout (the
    GroupNorms and the timestep embedding stay at least float32, never narrower than their input)."""
    net = ADMUNet(TINY_ADM).eval()
    net.load_state_dict(tiny_adm_state())
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 999])
    with torch.no_grad():
        single, double = net(x, t), copy.deepcopy(net).double()(x.double(), t)
    assert double.dtype == torch.float64
    assert (double - single).abs().max() <= 1e-5 * single.abs().max()
