"""Hyperparameters of SQ-GAN (Pezone et al. 2025) and named size presets.

``official`` reproduces ``config/sqgan_cityscapes.yml`` of the authors' code: 256×512
input, ch 128, ch_mult (1,1,2,2,4) (16× down → 16×32 = 512 tokens per branch), z 256,
attention at resolution 16, 1024 codes × 256 per branch, 8-layer demasker. The small
presets keep the structure (and the 512-token grid) with fewer channels, for tests.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from ...errors import ConfigError

#: Cityscapes trainIds 0..18 plus one void channel (255 → 19).
N_CLASSES = 19
N_SEMANTIC_CHANNELS = N_CLASSES + 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The official sample.py clamps normalised outputs to these bounds before un-normalising.
OUTPUT_CLAMP_MAX = (2.24, 2.42, 2.64)
OUTPUT_CLAMP_MIN = (-2.11, -2.03, -1.80)


@dataclass(frozen=True)
class SQGANConfig:
    """Architecture settings (both branches share them, as in the official config).

    ``height``×``width``: input size in pixels; ``ch``/``ch_mult``/``num_res_blocks``:
    encoder/decoder widths; ``z_channels``: latent channels; ``codebook_size``×
    ``codebook_dim``: VQ codebook; ``demasker_layers``: transformer depth of the ADM;
    ``spade_hidden``/``sempe_hidden``: hidden widths of the SPADE norms and of the
    image encoder's semantic input branch (128 in the official code).
    """

    height: int = 256
    width: int = 512
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    z_channels: int = 256
    codebook_size: int = 1024
    codebook_dim: int = 256
    demasker_layers: int = 8
    mask_init_value: float = 0.02
    masker_heads: int = 8
    spade_hidden: int = 128
    sempe_hidden: int = 128

    def __post_init__(self) -> None:
        down = 2 ** (len(self.ch_mult) - 1)
        if self.height % down or self.width % down:
            raise ConfigError(f"sqgan: {self.height}x{self.width} is not divisible by the {down}x downsampling",
                              "pick height/width multiples of 2**(len(ch_mult)-1)")
        for name in ("ch", "z_channels", "codebook_dim"):
            if getattr(self, name) % 32:
                raise ConfigError(f"sqgan: {name}={getattr(self, name)} is not a multiple of 32 (GroupNorm(32))",
                                  f"use a multiple of 32 for {name}")

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (rows, cols): 16×32 for the official model."""
        down = 2 ** (len(self.ch_mult) - 1)
        return self.height // down, self.width // down

    @property
    def n_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def index_bits(self) -> int:
        """Bits per transmitted index in the official bound: log2(1024) = 10."""
        return max(1, math.ceil(math.log2(self.codebook_size)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, SQGANConfig] = {
    "official": SQGANConfig(),
    # 256×512 input and 512 tokens like the official model, ~1/100 of its compute
    "tiny": SQGANConfig(ch=32, ch_mult=(1, 1, 1, 1, 1), num_res_blocks=1, z_channels=32, codebook_dim=32,
                        demasker_layers=1, spade_hidden=16, sempe_hidden=8),
    # 64×128 input, 4× down → still 16×32 = 512 tokens; for unit tests
    "micro": SQGANConfig(height=64, width=128, ch=32, ch_mult=(1, 1, 1), num_res_blocks=1, z_channels=32,
                         codebook_dim=32, demasker_layers=1, spade_hidden=16, sempe_hidden=8),
}


def make_config(preset: str = "official", **overrides: Any) -> SQGANConfig:
    """A preset with optional field overrides (e.g. ``codebook_size=256``)."""
    if preset not in PRESETS:
        raise ConfigError(f"sqgan: unknown model preset {preset!r}", f"use one of {sorted(PRESETS)}")
    if "ch_mult" in overrides:
        overrides["ch_mult"] = tuple(overrides["ch_mult"])
    if "attn_resolutions" in overrides:
        overrides["attn_resolutions"] = tuple(overrides["attn_resolutions"])
    try:
        return replace(PRESETS[preset], **overrides)
    except TypeError as err:
        raise ConfigError(f"sqgan: bad model override: {err}", "see SQGANConfig for the field names") from None
