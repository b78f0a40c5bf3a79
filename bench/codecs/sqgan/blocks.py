"""Convolutional building blocks of the VQ-GAN lineage used by SQ-GAN.

Attribute names (``norm1``, ``conv1``, ``nin_shortcut``, ``q``/``k``/``v``/``proj_out``,
``mlp_shared``/``mlp_gamma``/``mlp_beta``) follow the official code so that its
state_dict keys load unchanged. Inference only (no dropout, no timestep embedding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm(32 groups, eps 1e-6, affine) — the lineage's ``Normalize``."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1)


def conv1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=1, padding=0)


class Upsample(nn.Module):
    """Nearest 2× upsampling followed by a 3×3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Downsample(nn.Module):
    """Stride-2 3×3 conv with (right, bottom) zero padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class ResnetBlock(nn.Module):
    """GN–swish–conv ×2 with a 1×1 shortcut when the width changes.

    ``temb_channels > 0`` only creates the (unused) ``temb_proj`` layer that the
    official demasker blocks carry in their checkpoints.
    """

    def __init__(self, cin: int, cout: int | None = None, *, kernel_size: int = 3, temb_channels: int = 0) -> None:
        super().__init__()
        cout = cin if cout is None else cout
        pad = kernel_size // 2
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, kernel_size, padding=pad)
        if temb_channels > 0:
            self.temb_proj = nn.Linear(temb_channels, cout)
        self.norm2 = group_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size, padding=pad)
        if cin != cout:
            self.nin_shortcut = conv1(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


def _attend(block: nn.Module, x: torch.Tensor, key_weights: torch.Tensor | None) -> torch.Tensor:
    h = block.norm(x)
    q, k, v = block.q(h), block.k(h), block.v(h)
    b, c, hh, ww = q.shape
    q = q.reshape(b, c, hh * ww).permute(0, 2, 1)
    w = torch.bmm(q, k.reshape(b, c, hh * ww)) * (int(c) ** -0.5)
    w = torch.softmax(w, dim=2)
    if key_weights is not None:  # down-weight attention to masked keys (no renormalisation)
        w = w * key_weights.unsqueeze(-2)
    out = torch.bmm(v.reshape(b, c, hh * ww), w.permute(0, 2, 1)).reshape(b, c, hh, ww)
    return x + block.proj_out(out)


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q, self.k, self.v, self.proj_out = (conv1(channels, channels) for _ in range(4))

    def forward(self, x: torch.Tensor, key_weights: torch.Tensor | None = None) -> torch.Tensor:
        return _attend(self, x, key_weights)


class SPADEGroupNorm(nn.Module):
    """GroupNorm(32, no affine) modulated by ``1 + γ(seg)`` and ``β(seg)`` (SPADE).

    The label map is resized to the feature size with nearest interpolation.
    """

    def __init__(self, channels: int, label_channels: int, hidden: int = 128) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(32, channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return self.norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResBlock(nn.Module):
    """ResnetBlock whose norms are SPADE group norms (the official ``SDMResBlock``)."""

    def __init__(self, cin: int, cout: int, label_channels: int, hidden: int = 128) -> None:
        super().__init__()
        self.norm1 = SPADEGroupNorm(cin, label_channels, hidden)
        self.conv1 = conv3(cin, cout)
        self.norm2 = SPADEGroupNorm(cout, label_channels, hidden)
        self.conv2 = conv3(cout, cout)
        if cin != cout:
            self.nin_shortcut = conv1(cin, cout)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x, segmap)))
        h = self.conv2(swish(self.norm2(h, segmap)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h
