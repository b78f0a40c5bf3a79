"""Vector quantiser with the official storage layout.

``codebook.weight`` is [K+1, D] (row K is a padding row never chosen), with the EMA
buffers ``codebook.cluster_size_ema`` [K] and ``codebook.embed_ema`` [K, D] kept only
so that official checkpoints load strictly; inference uses the first K rows.
"""

from __future__ import annotations

import torch
from torch import nn


class Codebook(nn.Embedding):
    def __init__(self, size: int, dim: int) -> None:
        super().__init__(size + 1, dim, padding_idx=size)
        self.weight.requires_grad_(False)
        self.weight.data.uniform_(-1.0 / size, 1.0 / size)
        self.register_buffer("cluster_size_ema", torch.zeros(size))
        self.register_buffer("embed_ema", self.weight[:-1].detach().clone())


class VectorQuantizer(nn.Module):
    """Nearest-code assignment (squared L2, computed as in the official code) and lookup."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.size = size
        self.codebook = Codebook(size, dim)

    def indices(self, feats: torch.Tensor) -> torch.Tensor:
        """[k, D] features → [k] int64 code indices in [0, K)."""
        codes = self.codebook.weight[:-1]
        dist = torch.addmm(feats.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1)[None], feats, codes.t(),
                           alpha=-2.0)
        return dist.argmin(dim=-1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """[k] indices → [k, D] code vectors."""
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.size):
            raise ValueError(f"code index out of range [0, {self.size})")
        return self.codebook.weight[idx]
