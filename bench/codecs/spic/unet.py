"""SPIC's receiver network: a SPADE-conditioned super-resolution U-Net (guided-diffusion lineage).

Input: the noisy image x_t (3 channels, [-1, 1]) concatenated with the bilinearly upsampled
coarse image (3 channels, [-1, 1]) → 6 channels; a timestep t (original 0..999 scale); a
label map as one-hot [B, num_classes, H, W] (void = all-zero). Output: 6 channels = predicted
noise ε (3) and the variance interpolation value v ∈ [-1, 1] (3, ``learn_sigma``).

Layout (same state_dict keys as the official ``SuperResModel`` of frapez1/SPIC):
``time_embed`` (Linear, SiLU, Linear); ``input_blocks``: a 3×3 conv, then per level
``num_res_blocks`` plain :class:`ResBlock` (+ :class:`AttentionBlock` at the attention
downsample factors) and a down-sampling ResBlock between levels; ``middle_block``:
SPADE ResBlock, attention, SPADE ResBlock; ``output_blocks``: per level ``num_res_blocks + 1``
:class:`SpadeResBlock` on the skip-concatenated features (+ attention, + an up-sampling SPADE
ResBlock between levels); ``out``: GroupNorm, SiLU, 3×3 conv. SPADE norms are ``in_norm`` /
``out_norm`` with ``mlp_shared.0``, ``mlp_gamma``, ``mlp_beta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the SR U-Net. Defaults are the official Cityscapes model.

    ``attention_ds``: downsample factors with self-attention (official
    ``attention_resolutions 32,16,8`` with ``image_size 256`` → 256 // r = 8, 16, 32).
    ``num_channels`` is the width knob (a multiple of ``norm_groups`` at every level).
    """

    num_channels: int = 256
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2
    attention_ds: tuple[int, ...] = (8, 16, 32)
    num_head_channels: int = 64
    num_classes: int = 19
    spade_hidden: int = 128
    norm_groups: int = 32
    learn_sigma: bool = True
    image_channels: int = 3
    dropout: float = 0.0

    @property
    def out_channels(self) -> int:
        return self.image_channels * (2 if self.learn_sigma else 1)

    @property
    def downsample_factor(self) -> int:
        """Input sizes must be multiples of this (2 ** (levels − 1))."""
        return 2 ** (len(self.channel_mult) - 1)

    def as_dict(self) -> dict:
        return {"num_channels": self.num_channels, "channel_mult": list(self.channel_mult),
                "num_res_blocks": self.num_res_blocks, "attention_ds": list(self.attention_ds),
                "num_head_channels": self.num_head_channels, "num_classes": self.num_classes,
                "spade_hidden": self.spade_hidden, "norm_groups": self.norm_groups,
                "learn_sigma": self.learn_sigma}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [N, dim] of (possibly fractional) timesteps [N]: cos half, then sin half."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class GroupNormF32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back (stable under fp16 autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


def _zeroed(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _resample(x: torch.Tensor, mode: str | None) -> torch.Tensor:
    if mode == "down":
        return F.avg_pool2d(x, kernel_size=2, stride=2)
    if mode == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    return x


class SpadeGroupNorm(nn.Module):
    """SPADE: parameter-free GroupNorm, then ``x·(1 + γ(s)) + β(s)`` with γ, β from the
    label map ``s`` (nearest-resized to x) through a shared 3×3 conv + ReLU."""

    def __init__(self, channels: int, label_channels: int, hidden: int = 128, groups: int = 32) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        normed = self.norm(x.float()).to(x.dtype)
        seg = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return normed * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class ResBlock(nn.Module):
    """Encoder residual block with timestep scale-shift (``use_scale_shift_norm``).

    ``resample``: None, "down" (2×2 average pooling of both branches) or "up" (nearest ×2).
    """

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, *,
                 groups: int = 32, dropout: float = 0.0, resample: str | None = None) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.resample = resample
        self.in_layers = nn.Sequential(GroupNormF32(groups, channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.out_layers = nn.Sequential(GroupNormF32(groups, out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        _zeroed(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor, segmap: torch.Tensor | None = None) -> torch.Tensor:
        h = self.in_layers[1](self.in_layers[0](x))
        h = self.in_layers[2](_resample(h, self.resample))
        x = _resample(x, self.resample)
        scale, shift = self.emb_layers(emb).to(h.dtype)[..., None, None].chunk(2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        for layer in self.out_layers[1:]:
            h = layer(h)
        return self.skip_connection(x) + h


class SpadeResBlock(nn.Module):
    """Decoder/middle residual block: both norms are :class:`SpadeGroupNorm` on the label map,
    the second one followed by the timestep scale-shift."""

    def __init__(self, channels: int, emb_channels: int, label_channels: int, out_channels: int | None = None, *,
                 hidden: int = 128, groups: int = 32, dropout: float = 0.0, resample: str | None = None) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.resample = resample
        self.in_norm = SpadeGroupNorm(channels, label_channels, hidden, groups)
        self.in_layers = nn.Sequential(nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.out_norm = SpadeGroupNorm(out_channels, label_channels, hidden, groups)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout),
                                        _zeroed(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor, segmap: torch.Tensor | None = None) -> torch.Tensor:
        assert segmap is not None
        h = self.in_layers[0](self.in_norm(x, segmap))
        h = self.in_layers[1](_resample(h, self.resample))
        x = _resample(x, self.resample)
        scale, shift = self.emb_layers(emb).to(h.dtype)[..., None, None].chunk(2, dim=1)
        h = self.out_norm(h, segmap) * (1 + scale) + shift
        return self.skip_connection(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Spatial self-attention, heads of ``head_channels`` channels; the fused 1-D ``qkv`` conv
    is laid out head-major ([q_h, k_h, v_h] per head, guided-diffusion's "legacy" order)."""

    def __init__(self, channels: int, head_channels: int = 64, groups: int = 32) -> None:
        super().__init__()
        if channels % head_channels:
            raise ValueError(f"attention channels {channels} not divisible by head channels {head_channels}")
        self.num_heads = channels // head_channels
        self.norm = GroupNormF32(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = _zeroed(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None,
                segmap: torch.Tensor | None = None) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))  # [B, 3C, T]
        length = qkv.shape[-1]
        ch = c // self.num_heads
        q, k, v = qkv.reshape(b * self.num_heads, 3 * ch, length).split(ch, dim=1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = self.proj_out(out.transpose(1, 2).reshape(b, c, length))
        return (flat + h).reshape(b, c, *spatial)


class Stage(nn.ModuleList):
    """A sequence of layers; each gets (x, emb, segmap) (the plain conv gets x only)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x) if isinstance(layer, nn.Conv2d) else layer(x, emb, segmap)
        return x


class SpadeSRUNet(nn.Module):
    """The SPIC super-resolution U-Net (see module docstring). ``forward(x_t, t, labels, low_res)``."""

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = cfg = config
        mc, g, hid, ncls = cfg.num_channels, cfg.norm_groups, cfg.spade_hidden, cfg.num_classes
        emb_dim = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        ch = int(cfg.channel_mult[0] * mc)
        first_ch = ch
        self.input_blocks = nn.ModuleList([Stage([nn.Conv2d(2 * cfg.image_channels, ch, 3, padding=1)])])
        skip_chans = [ch]
        ds = 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, int(mult * mc), groups=g, dropout=cfg.dropout)]
                ch = int(mult * mc)
                if ds in cfg.attention_ds:
                    layers.append(AttentionBlock(ch, cfg.num_head_channels, g))
                self.input_blocks.append(Stage(layers))
                skip_chans.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(Stage([ResBlock(ch, emb_dim, ch, groups=g, dropout=cfg.dropout,
                                                         resample="down")]))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = Stage([
            SpadeResBlock(ch, emb_dim, ncls, hidden=hid, groups=g, dropout=cfg.dropout),
            AttentionBlock(ch, cfg.num_head_channels, g),
            SpadeResBlock(ch, emb_dim, ncls, hidden=hid, groups=g, dropout=cfg.dropout),
        ])

        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                skip = skip_chans.pop()
                layers = [SpadeResBlock(ch + skip, emb_dim, ncls, int(mc * mult), hidden=hid, groups=g,
                                        dropout=cfg.dropout)]
                ch = int(mc * mult)
                if ds in cfg.attention_ds:
                    layers.append(AttentionBlock(ch, cfg.num_head_channels, g))
                if level and i == cfg.num_res_blocks:
                    layers.append(SpadeResBlock(ch, emb_dim, ncls, ch, hidden=hid, groups=g, dropout=cfg.dropout,
                                                resample="up"))
                    ds //= 2
                self.output_blocks.append(Stage(layers))

        self.out = nn.Sequential(GroupNormF32(g, ch), nn.SiLU(),
                                 _zeroed(nn.Conv2d(first_ch, cfg.out_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, low_res: torch.Tensor) -> torch.Tensor:
        """ε and variance outputs [B, out_channels, H, W].

        ``x``: x_t [B, 3, H, W] in [-1, 1] scale; ``t``: [B] original timesteps (0..999);
        ``labels``: one-hot [B, num_classes, H, W]; ``low_res``: coarse image [B, 3, h, w] in [-1, 1].
        """
        cfg = self.config
        if labels.shape[1] != cfg.num_classes or labels.shape[2:] != x.shape[2:]:
            raise ValueError(f"labels must be [B, {cfg.num_classes}, {x.shape[2]}, {x.shape[3]}], "
                             f"got {tuple(labels.shape)}")
        up = F.interpolate(low_res, size=x.shape[2:], mode="bilinear")
        h = torch.cat([x, up.to(x.dtype)], dim=1)
        emb = self.time_embed(timestep_embedding(t, cfg.num_channels))
        labels = labels.to(h.dtype)
        skips = []
        for stage in self.input_blocks:
            h = stage(h, emb, labels)
            skips.append(h)
        h = self.middle_block(h, emb, labels)
        for stage in self.output_blocks:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, labels)
        return self.out(h)


def one_hot_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[B, H, W] integer ids → float one-hot [B, num_classes, H, W]; ids ≥ num_classes
    (void, 255) give an all-zero vector (the official code maps 255 to an extra dropped channel)."""
    ids = labels.long()
    valid = ids < num_classes
    onehot = F.one_hot(torch.where(valid, ids, torch.zeros_like(ids)), num_classes).permute(0, 3, 1, 2).float()
    return onehot * valid[:, None].float()
