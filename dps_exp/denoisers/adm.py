"""The ADM / guided-diffusion UNet (Dhariwal & Nichol 2021), as the DPS paper's FFHQ and ImageNet priors use it.

Our own implementation; its module tree mirrors guided-diffusion's so that the published checkpoints load with
`strict=True` (`input_blocks.1.0.in_layers.2.weight`, ...). Attention runs through
`scaled_dot_product_attention`; GroupNorm runs in float32 even under autocast, as the original does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from dps_exp.errors import ConfigError


@dataclass(frozen=True)
class ADMConfig:
    """Architecture hyperparameters, named as in guided-diffusion's `create_model`.

    Args:
        image_size: the image side the network is built for (`attention_resolutions` count at it)
        in_channels: input channels (3: RGB)
        model_channels: channels of the first level
        out_channels: 3: ε only (fixed variance); 6: ε and the learned-range variance v
        num_res_blocks: residual blocks per level
        attention_resolutions: feature-map sizes (at `image_size`) that get attention
        channel_mult: each level's channels as multiples of `model_channels`; every level but the last halves H and W
        num_head_channels: channels per attention head
        dropout: dropout rate in the residual blocks
        resblock_updown: down- and upsample with residual blocks (else with plain resampling layers)
        use_scale_shift_norm: the timestep embedding scales and shifts the normalised features (else it is added)
        norm_groups: GroupNorm groups: every level's channels must be a multiple of it
    """

    image_size: int = 256
    in_channels: int = 3
    model_channels: int = 128
    out_channels: int = 6  # ε and the learned-range variance v, 3 channels each
    num_res_blocks: int = 1
    attention_resolutions: Sequence[int] = (16,)  # feature-map sizes (at image_size) that get attention
    channel_mult: Sequence[int] = (1, 1, 2, 2, 4, 4)
    num_head_channels: int = 64
    dropout: float = 0.0
    resblock_updown: bool = True
    use_scale_shift_norm: bool = True
    norm_groups: int = 32

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def size_multiple(self) -> int:
        """What image sides must be a multiple of: H and W are halved once per level but the last."""
        return 2 ** (len(self.channel_mult) - 1)

    def check(self, name: str = "architecture") -> None:
        """Stop on a network that cannot be built or cannot take its own image size, naming the key."""
        levels = [self.model_channels * m for m in self.channel_mult]
        if bad := next((c for c in levels if c % self.norm_groups), None):
            raise ConfigError(
                f"{name}.model_channels={self.model_channels} × channel_mult gives {bad} channels, not a multiple "
                f"of norm_groups={self.norm_groups} (GroupNorm)"
            )
        if self.image_size % self.size_multiple:
            raise ConfigError(
                f"{name}.image_size={self.image_size} is not a multiple of {self.size_multiple}: the UNet halves it "
                f"{len(self.channel_mult) - 1} times (channel_mult has {len(self.channel_mult)} levels)"
            )

    @classmethod
    def from_dict(cls, fields: Mapping) -> ADMConfig:
        """The inverse of `to_dict` (lists, from JSON or YAML, become tuples); an ADMConfig passes through."""
        if isinstance(fields, cls):
            return fields
        return cls(**{k: tuple(v) if isinstance(v, list | tuple) else v for k, v in dict(fields).items()})


ARCHITECTURES = {
    # DPS's ffhq_model_config.yaml: the FFHQ 256 prior (ffhq_10m.pt)
    "ffhq": ADMConfig(),
    # OpenAI's 256x256_diffusion_uncond.pt
    "imagenet": ADMConfig(model_channels=256, num_res_blocks=2, attention_resolutions=(32, 16, 8)),
}


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 or wider whatever the input dtype (bf16 statistics over large groups drift;
    a float64 network, the tests' reference evaluation, stays float64)."""

    def forward(self, x: Tensor) -> Tensor:
        wide = torch.promote_types(x.dtype, torch.float32)
        return F.group_norm(x.to(wide), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """Sinusoidal embedding of (B,) timesteps, [cos | sin] as guided-diffusion orders it, computed in `dtype`
    (float32, as guided-diffusion, or wider: t · freq reaches 999 and bf16 would garble it)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / half)
    args = t.to(dtype)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Resample(nn.Module):
    """×2 nearest upsampling or ×2 average-pool downsampling, optionally followed/done by a 3×3 conv.

    The conv's attribute name (`conv` up, `op` down) follows guided-diffusion's checkpoints.
    """

    def __init__(self, channels: int, up: bool, with_conv: bool):
        super().__init__()
        self.up = up
        if with_conv and up:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        elif with_conv:
            self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            return self.conv(x) if hasattr(self, "conv") else x
        return self.op(x) if hasattr(self, "op") else F.avg_pool2d(x, 2)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the timestep entering as a scale and shift of the second norm."""

    def __init__(self, cfg: ADMConfig, channels: int, out_channels: int, emb_dim: int, up=False, down=False):
        super().__init__()
        self.in_layers = nn.Sequential(
            GroupNorm32(cfg.norm_groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.resample = Resample(channels, up=up, with_conv=False) if (up or down) else None
        self.scale_shift = cfg.use_scale_shift_norm
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels * (2 if self.scale_shift else 1)))
        self.out_layers = nn.Sequential(
            GroupNorm32(cfg.norm_groups, out_channels),
            nn.SiLU(),
            nn.Dropout(cfg.dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        in_norm, in_act, in_conv = self.in_layers  # unpacked, not sliced: a slice builds a new Sequential per call
        out_norm, out_act, dropout, out_conv = self.out_layers
        h = in_act(in_norm(x))
        if self.resample is not None:  # resample between the activation and the conv, both paths
            h, x = self.resample(h), self.resample(x)
        h = in_conv(h)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = out_norm(h) * (1 + scale) + shift
        else:
            h = out_norm(h + e)
        h = out_conv(dropout(out_act(h)))
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over all positions; heads split before q/k/v as in guided-diffusion's legacy order."""

    def __init__(self, cfg: ADMConfig, channels: int):
        super().__init__()
        self.heads = channels // cfg.num_head_channels
        self.norm = GroupNorm32(cfg.norm_groups, channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        qkv = self.qkv(self.norm(flat))  # (B, heads·3·d, L), per head [q | k | v]
        q, k, v = qkv.reshape(b, self.heads, 3 * (c // self.heads), h * w).transpose(-1, -2).chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, d), scale 1/√d as the original
        out = out.transpose(-1, -2).reshape(b, c, h * w)
        return (flat + self.proj_out(out)).reshape(b, c, h, w)


class Block(nn.ModuleList):
    """A sequence of layers; those that take the timestep embedding (ResBlock) get it."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock | AttentionBlock) else layer(x)
        return x


class ADMUNet(nn.Module):
    """ε-prediction UNet: (B, in, H, W) on the [-1, 1] scale and (B,) timesteps → (B, out, H, W).

    H and W must be divisible by 2^(levels−1). `checkpointing` recomputes each block's activations in the
    backward pass instead of storing them (less memory at large batch, one more forward pass of time).
    """

    def __init__(self, cfg: ADMConfig = ADMConfig(), checkpointing: bool = False):
        super().__init__()
        self.cfg, self.checkpointing = cfg, checkpointing
        self.size_multiple = cfg.size_multiple
        ch = cfg.model_channels
        emb_dim = 4 * ch
        attn_at = {cfg.image_size // r for r in cfg.attention_resolutions}  # as downsampling factors

        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.input_blocks = nn.ModuleList([Block([nn.Conv2d(cfg.in_channels, ch, 3, padding=1)])])
        skips, ds = [ch], 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers = [ResBlock(cfg, ch, mult * cfg.model_channels, emb_dim)]
                ch = mult * cfg.model_channels
                if ds in attn_at:
                    layers.append(AttentionBlock(cfg, ch))
                self.input_blocks.append(Block(layers))
                skips.append(ch)
            if level < len(cfg.channel_mult) - 1:
                down = ResBlock(cfg, ch, ch, emb_dim, down=True) if cfg.resblock_updown else Resample(ch, False, True)
                self.input_blocks.append(Block([down]))
                skips.append(ch)
                ds *= 2

        self.middle_block = Block(
            [ResBlock(cfg, ch, ch, emb_dim), AttentionBlock(cfg, ch), ResBlock(cfg, ch, ch, emb_dim)]
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(cfg, ch + skips.pop(), mult * cfg.model_channels, emb_dim)]
                ch = mult * cfg.model_channels
                if ds in attn_at:
                    layers.append(AttentionBlock(cfg, ch))
                if level and i == cfg.num_res_blocks:
                    up = ResBlock(cfg, ch, ch, emb_dim, up=True) if cfg.resblock_updown else Resample(ch, True, True)
                    layers.append(up)
                    ds //= 2
                self.output_blocks.append(Block(layers))

        self.out = nn.Sequential(
            GroupNorm32(cfg.norm_groups, ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1)
        )

    def _run(self, block: Block, h: Tensor, emb: Tensor) -> Tensor:
        if self.checkpointing and torch.is_grad_enabled():
            return checkpoint(block, h, emb, use_reentrant=False)
        return block(h, emb)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        wide = torch.promote_types(self.time_embed[0].weight.dtype, torch.float32)  # bf16 weights: float32
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels, dtype=wide))
        hs, h = [], x
        for block in self.input_blocks:
            h = self._run(block, h, emb)
            hs.append(h)
        h = self._run(self.middle_block, h, emb)
        for block in self.output_blocks:
            h = self._run(block, torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
