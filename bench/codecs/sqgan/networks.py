"""Encoders and decoders of both SQ-GAN branches (key layout of the official code).

- :class:`Encoder` — image encoder; its input conv is summed with the semantic
  positional encoding ``conv_in_semantic`` (SemPE: 19 label channels → 1 map).
- :class:`SemanticEncoder` — encoder of the 20-channel one-hot SSM.
- :class:`SemanticDecoder` — plain VQ-GAN decoder back to 20 SSM logits.
- :class:`SpadeDecoder` — image decoder made of SPADE ResBlocks conditioned on the
  (decoded) 19-channel one-hot SSM; no middle block.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import (
    AttnBlock,
    Downsample,
    ResnetBlock,
    SPADEResBlock,
    Upsample,
    conv3,
    group_norm,
    swish,
)
from .config import N_CLASSES, N_SEMANTIC_CHANNELS, SQGANConfig


class _Level(nn.Module):
    """One resolution level: ``block`` list, ``attn`` list, optional resampler."""


def _middle(channels: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels)
    mid.attn_1 = AttnBlock(channels)
    mid.block_2 = ResnetBlock(channels)
    return mid


def _run_middle(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


def _run_level(level: nn.Module, h: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
    """A level's ResNet blocks (given ``cond``, e.g. the SSM for SPADE blocks), each followed
    by its attention block when the level has them."""
    for j, block in enumerate(level.block):
        h = block(h, *cond)
        if len(level.attn):
            h = level.attn[j](h)
    return h


def _run_up(up: nn.ModuleList, h: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
    """The decoder levels from the lowest resolution up (stored highest-resolution first)."""
    for level in reversed(up):
        h = _run_level(level, h, *cond)
        if hasattr(level, "upsample"):
            h = level.upsample(h)
    return h


class _DownPath(nn.Module):
    """Shared body of both encoders: ``conv_in`` → ``down`` levels → ``mid`` → ``conv_out``."""

    def __init__(self, cfg: SQGANConfig, in_channels: int) -> None:
        super().__init__()
        self.conv_in = nn.Sequential(conv3(in_channels, cfg.ch), group_norm(cfg.ch))
        res, in_mult = cfg.height, (1, *cfg.ch_mult)
        self.down = nn.ModuleList()
        block_in = cfg.ch
        for i, mult in enumerate(cfg.ch_mult):
            level = _Level()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            block_in = cfg.ch * in_mult[i]
            for _ in range(cfg.num_res_blocks):
                level.block.append(ResnetBlock(block_in, cfg.ch * mult))
                block_in = cfg.ch * mult
                if res in cfg.attn_resolutions:
                    level.attn.append(AttnBlock(block_in))
            if i != len(cfg.ch_mult) - 1:
                level.downsample = Downsample(block_in)
                res //= 2
            self.down.append(level)
        self.mid = _middle(block_in)
        self.norm_out = group_norm(block_in)
        self.conv_out = conv3(block_in, cfg.z_channels)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        for level in self.down:
            h = _run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = _run_middle(self.mid, h)
        return self.conv_out(swish(self.norm_out(h)))


class Encoder(_DownPath):
    """Image encoder: normalised RGB [B,3,H,W] + 19-ch one-hot SSM → latents [B,z,H/16,W/16]."""

    def __init__(self, cfg: SQGANConfig) -> None:
        super().__init__(cfg, 3)
        self.conv_in_semantic = nn.Sequential(
            conv3(N_CLASSES, cfg.sempe_hidden), nn.ReLU(), nn.Conv2d(cfg.sempe_hidden, 1, kernel_size=1))

    def forward(self, x: torch.Tensor, semantic19: torch.Tensor) -> torch.Tensor:
        return self.body(self.conv_in(x) + self.conv_in_semantic(semantic19))


class SemanticEncoder(_DownPath):
    """SSM encoder: 20-ch one-hot [B,20,H,W] → latents [B,z,H/16,W/16]."""

    def __init__(self, cfg: SQGANConfig) -> None:
        super().__init__(cfg, N_SEMANTIC_CHANNELS)

    def forward(self, semantic20: torch.Tensor) -> torch.Tensor:
        return self.body(self.conv_in(semantic20))


def _up_levels(cfg: SQGANConfig, block_in: int, make_block) -> tuple[nn.ModuleList, int]:
    levels: list[nn.Module] = []
    res = cfg.height // 2 ** (len(cfg.ch_mult) - 1)
    for i in reversed(range(len(cfg.ch_mult))):
        level = _Level()
        level.block, level.attn = nn.ModuleList(), nn.ModuleList()
        block_out = cfg.ch * cfg.ch_mult[i]
        for _ in range(cfg.num_res_blocks + 1):
            level.block.append(make_block(block_in, block_out))
            block_in = block_out
            if res in cfg.attn_resolutions:
                level.attn.append(AttnBlock(block_in))
        if i != 0:
            level.upsample = Upsample(block_in)
            res *= 2
        levels.insert(0, level)
    return nn.ModuleList(levels), block_in


class SemanticDecoder(nn.Module):
    """Latents [B,z,h,w] → SSM logits [B,20,H,W] (argmax = trainId, 19 = void)."""

    def __init__(self, cfg: SQGANConfig) -> None:
        super().__init__()
        block_in = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = conv3(cfg.z_channels, block_in)
        self.mid = _middle(block_in)
        self.up, block_in = _up_levels(cfg, block_in, lambda a, b: ResnetBlock(a, b))
        self.norm_out = group_norm(block_in)
        self.conv_out = conv3(block_in, N_SEMANTIC_CHANNELS)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = _run_up(self.up, _run_middle(self.mid, self.conv_in(z)))
        return self.conv_out(swish(self.norm_out(h)))


class SpadeDecoder(nn.Module):
    """Latents [B,z,h,w] + 19-ch one-hot SSM [B,19,H,W] → normalised RGB [B,3,H,W]."""

    def __init__(self, cfg: SQGANConfig) -> None:
        super().__init__()
        block_in = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = conv3(cfg.z_channels, block_in)
        self.up, block_in = _up_levels(
            cfg, block_in, lambda a, b: SPADEResBlock(a, b, N_CLASSES, cfg.spade_hidden))
        self.norm_out = group_norm(block_in)
        self.conv_out = conv3(block_in, 3)

    def forward(self, z: torch.Tensor, semantic19: torch.Tensor) -> torch.Tensor:
        h = _run_up(self.up, self.conv_in(z), semantic19)
        return self.conv_out(swish(self.norm_out(h)))
