"""Tiny random-init SQ-GAN checkpoints written in the Lightning layout, for sweep tests."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.codecs.sqgan.checkpoint import save_official_layout
from bench.codecs.sqgan.config import make_config
from bench.codecs.sqgan.model import SQGAN

#: the demo set at the micro model's size (64×128), so a checkpoint codes an image in ~0.1 s
DEMO_MICRO = ["--param", "demo.height=64", "--param", "demo.width=128"]


def micro_model(seed: int) -> SQGAN:
    """A micro SQ-GAN with random weights (seeded) and codebooks spread to the features' scale."""
    torch.manual_seed(seed)
    model = SQGAN(make_config("micro"))
    g = torch.Generator().manual_seed(seed)
    for q in (model.quantize, model.quantize_semantic):
        q.codebook.weight.data.copy_(torch.randn(q.codebook.weight.shape, generator=g) * 0.05)
    return model


def degrade(model: SQGAN) -> SQGAN:
    """Make the image decoder output a constant far outside the data (saturated white)."""
    with torch.no_grad():
        model.decoder.conv_out.weight.zero_()
        model.decoder.conv_out.bias.fill_(100.0)
    return model


def write_checkpoints(folder: Path, seeds: list[int], *, degrade_last: bool = False) -> list[Path]:
    """``epoch=000.ckpt``, ``epoch=001.ckpt`` … one per seed (global_step 0 in all, as
    :func:`save_official_layout` writes); the last one degraded when asked."""
    paths = []
    for i, seed in enumerate(seeds):
        model = micro_model(seed)
        if degrade_last and i == len(seeds) - 1:
            degrade(model)
        paths.append(save_official_layout(model, folder / f"epoch={i:03d}.ckpt"))
    return paths
