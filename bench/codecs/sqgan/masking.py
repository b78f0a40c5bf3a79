"""SAMM (semantic-aware masking, the official ``masker``) and ADM (the ``demasker``).

Token selection: the masker scores every latent position with a 2-layer SPADE-conditioned
net (sigmoid scores in (0, 1)); the ``k = int(N·m)`` highest-scoring positions are kept
(``m`` = fraction KEPT). A kept token's feature is ``LayerNorm(z)·score`` projected to the
codebook dimension. The demasker puts the (quantised) kept tokens back on the grid, fills
the others with a learned mask token and refines with a masked-attention transformer.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import AttnBlock, ResnetBlock, SPADEGroupNorm
from .config import N_CLASSES, SQGANConfig


def kept_count(fraction: float, n_tokens: int) -> int:
    """Tokens kept at fraction ``m`` ∈ (0, 1]: ``int(n_tokens·m)`` as in the official code."""
    return int(fraction * n_tokens)


class ScorePredictor(nn.Module):
    """SPADE-GN → 3×3 conv → ReLU → SPADE-GN → 1×1 conv → sigmoid: scores [B,1,h,w]."""

    def __init__(self, channels: int, hidden: int = 128) -> None:
        super().__init__()
        self.layer1 = SPADEGroupNorm(channels, N_CLASSES, hidden)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.layer2 = SPADEGroupNorm(channels, N_CLASSES, hidden)
        self.conv2 = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor, semantic19: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(self.layer1(x, semantic19)))
        return torch.sigmoid(self.conv2(self.layer2(h, semantic19)))


class Masker(nn.Module):
    """SAMM. ``cross_attention`` exists in the official checkpoints but is never used."""

    def __init__(self, cfg: SQGANConfig) -> None:
        super().__init__()
        self.cross_attention = nn.MultiheadAttention(cfg.z_channels, cfg.masker_heads, batch_first=True)
        self.score_pred_net = ScorePredictor(cfg.z_channels, cfg.spade_hidden)
        self.norm_feature = nn.LayerNorm(cfg.z_channels, elementwise_affine=False)
        self.pre_projection = nn.Linear(cfg.z_channels, cfg.codebook_dim, bias=False)

    def select(self, z: torch.Tensor, semantic19: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k selection for one image (B = 1).

        Returns (positions [k] int64 sorted by descending score, features [k, codebook_dim]).
        """
        if z.shape[0] != 1:
            raise ValueError("Masker.select works on one image at a time")
        scores = self.score_pred_net(z, semantic19).reshape(-1)
        order = torch.sort(scores, descending=True).indices[:k]
        tokens = self.norm_feature(z.flatten(2).transpose(1, 2)[0])  # [N, z]
        feats = tokens[order] * scores[order].unsqueeze(-1)
        return order, self.pre_projection(feats)


class _MaskedTransformer(nn.Module):
    """``n_layer`` × (ResnetBlock → attention down-weighting masked keys) → ResnetBlock."""

    def __init__(self, channels: int, n_layer: int, mask_init_value: float) -> None:
        super().__init__()
        self.mask_init_value = mask_init_value
        self.blocks = nn.ModuleList()
        for _ in range(n_layer):
            block = nn.Module()
            block.attn = AttnBlock(channels)
            block.resblock = ResnetBlock(channels, temb_channels=512)
            self.blocks.append(block)
        self.last_resblock = ResnetBlock(channels, temb_channels=512)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask + self.mask_init_value * (1 - mask)  # masked keys start at 0.02 …
        for block in self.blocks:
            x = block.attn(block.resblock(x), weights)
            weights = torch.sqrt(weights)  # … and are trusted more at each layer
        return self.last_resblock(x)


class Demasker(nn.Module):
    """ADM: kept quantised tokens + positions → full latent grid [1, z, h, w]."""

    def __init__(self, cfg: SQGANConfig) -> None:
        super().__init__()
        self.grid = cfg.grid
        d = cfg.codebook_dim
        self.mask_token = nn.Parameter(torch.empty(1, d, 1).uniform_(-1.0 / d, 1.0 / d))
        self.post_projection = nn.Conv2d(d, cfg.z_channels, 1)
        self.transformer = _MaskedTransformer(cfg.z_channels, cfg.demasker_layers, cfg.mask_init_value)
        self.conv_in = nn.Conv2d(cfg.z_channels, cfg.z_channels, 3, padding=1)

    def forward(self, positions: torch.Tensor, quantised: torch.Tensor) -> torch.Tensor:
        """``positions`` [k] int64, ``quantised`` [k, codebook_dim] → [1, z, h, w]."""
        n = self.grid[0] * self.grid[1]
        full = self.mask_token[0].expand(-1, n).clone()  # [d, N]
        full[:, positions] = quantised.t()
        mask = torch.zeros(1, n, dtype=quantised.dtype, device=quantised.device)
        mask[0, positions] = 1.0
        h = self.conv_in(self.post_projection(full.reshape(1, -1, *self.grid)))
        return self.transformer(h, mask)
