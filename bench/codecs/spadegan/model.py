"""Networks of the SPADE-GAN codec of Iwai, Miyazaki & Omachi (IEEE Access 2024).

Built from compressai's Cheng et al. 2020 blocks:

* encoder ``g_a`` and hyper-networks ``h_a`` / ``h_s``: Cheng2020-Attention (residual blocks,
  two simplified attention modules, 16× down to ``C_y`` = ``latent_channels`` channels);
* entropy model: hyperprior + 5×5 masked-convolution context model (serial decoding, as in
  Cheng et al.) predicting a ``K``-component Gaussian mixture per latent element
  (compressai :class:`GaussianMixtureConditional`), hyper-latent with an
  :class:`EntropyBottleneck` (learned factorised prior);
* decoder ``g_s``: Cheng's decoder with every plain residual block replaced by a SPADE
  residual block, fed the 16×-downscaled label map through a semantic branch with three
  extra 2× up-sampling blocks (features at 1/16, 1/8, 1/4 and 1/2 of the image size);
* :class:`MultiScaleDiscriminator`: three pix2pixHD patch discriminators on the image
  concatenated with the one-hot full-resolution label map (training only).

Images are float tensors in [0, 1], B×3×H×W with H, W multiples of 64
(:data:`PAD_MULTIPLE`; the adapter pads). Label maps are symbol maps (class ids, with the
void/255 class as the last symbol), one-hot encoded by :func:`one_hot`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianMixtureConditional
from compressai.layers import (
    AttentionBlock,
    MaskedConv2d,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv3x3,
    subpel_conv3x3,
)
from compressai.models import CompressionModel

PAD_MULTIPLE = 64  # image sides must be multiples of this (16× latent, 4× more for ẑ)
LATENT_FACTOR = 16  # ŷ and the transmitted label map are 1/16 of the image size
CONTEXT_KERNEL = 5


@dataclass(frozen=True)
class SpadeGANConfig:
    """Architecture and training settings stored with every checkpoint.

    ``width``: channels N of encoder/decoder/hyper-networks (paper: 192).
    ``latent_channels``: C_y (paper: 192). ``mixtures``: K (paper: 3).
    ``semantic_width``: channels of the semantic branch feeding the SPADE layers.
    ``class_set``: label classes the model was trained on; ``num_classes`` of them, plus one
    void symbol (label 255). ``label_hidden``: width of the label-map compressor.
    ``lambda_mse``: λ of the rate–distortion stage (loss = bpp + λ·MSE₂₅₅/1000).
    """

    width: int = 192
    latent_channels: int = 192
    mixtures: int = 3
    semantic_width: int = 128
    class_set: str = "coco_merged9"
    num_classes: int = 9
    label_hidden: int = 64
    lambda_mse: float = 0.4

    @property
    def num_symbols(self) -> int:
        """Label alphabet: the classes plus the void symbol (label 255)."""
        return self.num_classes + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpadeGANConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        return cls(**data)


class single_thread:
    """Run torch on one CPU thread inside the block (restored after).

    Used around everything that shapes the entropy coder's probabilities (h_s, context
    model, entropy parameters, label-map model) on BOTH sides: results then do not depend
    on the caller's thread count, and the many tiny per-wavefront ops run far faster than
    with several threads competing for busy cores.
    """

    def __enter__(self) -> None:
        self.old = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.old)


def wavefronts(height: int, width: int) -> list[tuple[list[int], list[int]]]:
    """Positions of an h×w raster that a 5×5 type-A causal context allows to code together.

    Pixel (i, j) depends on rows i−2..i−1 at columns j−2..j+2 and on (i, j−2..j−1); all
    of these have a smaller ``t = 3·i + j`` (the worst case, (i−1, j+2), has t − 1), so the
    pixels of one front ``t`` are independent. Coding front after front (rows in increasing
    order) is the serial raster decoding, batched. Returns ``[(rows, cols), ...]``.
    """
    fronts = []
    for t in range(3 * (height - 1) + width):
        rows = [i for i in range(min(height - 1, t // 3), -1, -1) if t - 3 * i < width]
        rows.reverse()
        fronts.append((rows, [t - 3 * i for i in rows]))
    return fronts


def windows(buffer: torch.Tensor, rows: list[int], cols: list[int], kernel: int = CONTEXT_KERNEL) -> torch.Tensor:
    """n×C×k×k windows of a padded 1×C×(H+k−1)×(W+k−1) buffer centred on (rows, cols)."""
    return torch.cat([buffer[:, :, i:i + kernel, j:j + kernel] for i, j in zip(rows, cols)], dim=0)


def one_hot(symbols: torch.Tensor, num_symbols: int) -> torch.Tensor:
    """B×H×W int64 symbols → B×S×H×W float one-hot."""
    return F.one_hot(symbols.long(), num_symbols).permute(0, 3, 1, 2).float()


# --------------------------------------------------------------------------- decoder


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: IN(h)·(1 + γ(s)) + β(s), γ, β from 3×3 convs."""

    def __init__(self, channels: int, semantic_channels: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.gamma = conv3x3(semantic_channels, channels)
        self.beta = conv3x3(semantic_channels, channels)

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.norm(h) * (1 + self.gamma(s)) + self.beta(s)


class SPADEResBlock(nn.Module):
    """SPADE → LeakyReLU → 3×3 conv, twice, plus the identity (Park et al. 2019)."""

    def __init__(self, channels: int, semantic_channels: int) -> None:
        super().__init__()
        self.spade1 = SPADE(channels, semantic_channels)
        self.conv1 = conv3x3(channels, channels)
        self.spade2 = SPADE(channels, semantic_channels)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.leaky_relu(self.spade1(h, s), 0.2))
        out = self.conv2(F.leaky_relu(self.spade2(out, s), 0.2))
        return h + out


class SemanticBranch(nn.Module):
    """One-hot label map at 1/16 → features at 1/16, 1/8, 1/4, 1/2 (three up-sampling blocks)."""

    def __init__(self, num_symbols: int, channels: int) -> None:
        super().__init__()
        self.head = nn.Sequential(conv3x3(num_symbols, channels), nn.LeakyReLU(0.2))
        self.ups = nn.ModuleList(
            nn.Sequential(subpel_conv3x3(channels, channels, 2), nn.LeakyReLU(0.2), conv3x3(channels, channels),
                          nn.LeakyReLU(0.2))
            for _ in range(3)
        )

    def forward(self, s: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.head(s)]
        for up in self.ups:
            feats.append(up(feats[-1]))
        return feats


class SpadeDecoder(nn.Module):
    """Cheng2020-Attention synthesis with SPADE residual blocks (Fig. 4 of the paper)."""

    def __init__(self, width: int, latent_channels: int, semantic_width: int, num_symbols: int) -> None:
        super().__init__()
        n = width
        self.semantic = SemanticBranch(num_symbols, semantic_width)
        self.attn1 = AttentionBlock(latent_channels)
        self.in_conv = conv3x3(latent_channels, n) if latent_channels != n else nn.Identity()
        self.res16 = SPADEResBlock(n, semantic_width)
        self.up8 = ResidualBlockUpsample(n, n, 2)
        self.res8 = SPADEResBlock(n, semantic_width)
        self.up4 = ResidualBlockUpsample(n, n, 2)
        self.attn4 = AttentionBlock(n)
        self.res4 = SPADEResBlock(n, semantic_width)
        self.up2 = ResidualBlockUpsample(n, n, 2)
        self.res2 = SPADEResBlock(n, semantic_width)
        self.out = subpel_conv3x3(n, 3, 2)

    def forward(self, y_hat: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        s16, s8, s4, s2 = self.semantic(semantics)
        h = self.in_conv(self.attn1(y_hat))
        h = self.res16(h, s16)
        h = self.res8(self.up8(h), s8)
        h = self.res4(self.attn4(self.up4(h)), s4)
        h = self.res2(self.up2(h), s2)
        return self.out(h)


# --------------------------------------------------------------------------- compression model


class SpadeGANModel(CompressionModel):
    """Encoder, hyperprior + context GMM entropy model and SPADE decoder.

    :meth:`forward` is the training pass (noise or rounding, likelihoods); the real
    bitstream is written by :mod:`.bitstream`, which uses :meth:`gmm_parameters` one
    latent position at a time, exactly as the decoder must.
    """

    def __init__(self, config: SpadeGANConfig) -> None:
        super().__init__()
        self.config = config
        n, m, k = config.width, config.latent_channels, config.mixtures
        self.g_a = nn.Sequential(
            ResidualBlockWithStride(3, n, stride=2),
            ResidualBlock(n, n),
            ResidualBlockWithStride(n, n, stride=2),
            AttentionBlock(n),
            ResidualBlock(n, n),
            ResidualBlockWithStride(n, n, stride=2),
            ResidualBlock(n, n),
            conv3x3(n, m, stride=2),
            AttentionBlock(m),
        )
        self.h_a = nn.Sequential(
            conv3x3(m, n), nn.LeakyReLU(inplace=True),
            conv3x3(n, n), nn.LeakyReLU(inplace=True),
            conv3x3(n, n, stride=2), nn.LeakyReLU(inplace=True),
            conv3x3(n, n), nn.LeakyReLU(inplace=True),
            conv3x3(n, n, stride=2),
        )
        self.h_s = nn.Sequential(
            conv3x3(n, m), nn.LeakyReLU(inplace=True),
            subpel_conv3x3(m, m, 2), nn.LeakyReLU(inplace=True),
            conv3x3(m, m * 3 // 2), nn.LeakyReLU(inplace=True),
            subpel_conv3x3(m * 3 // 2, m * 3 // 2, 2), nn.LeakyReLU(inplace=True),
            conv3x3(m * 3 // 2, m * 2),
        )
        self.context_prediction = MaskedConv2d(m, 2 * m, kernel_size=CONTEXT_KERNEL, padding=CONTEXT_KERNEL // 2)
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(m * 4, m * 10 // 3, 1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(m * 10 // 3, m * 8 // 3, 1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(m * 8 // 3, 3 * k * m, 1),
        )
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.gaussian_conditional = GaussianMixtureConditional(K=k)
        self.g_s = SpadeDecoder(n, m, config.semantic_width, config.num_symbols)

    # -- entropy parameters -------------------------------------------------------
    def split_parameters(self, gp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """B×3KM×H×W → scales, means, weights, each B×KM×H×W in compressai's [k][m] layout
        (weights softmax-normalised over the K components)."""
        k, m = self.config.mixtures, self.config.latent_channels
        scales, means, logits = gp.chunk(3, dim=1)
        b, _, h, w = logits.shape
        weights = torch.softmax(logits.reshape(b, k, m, h, w), dim=1).reshape(b, k * m, h, w)
        return scales, means, weights

    def gmm_parameters(self, params: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.split_parameters(self.entropy_parameters(torch.cat((params, ctx), dim=1)))

    def likelihood(self, y_hat: torch.Tensor, scales: torch.Tensor, means: torch.Tensor,
                   weights: torch.Tensor) -> torch.Tensor:
        gc = self.gaussian_conditional
        lik = gc._likelihood(y_hat, scales, means, weights)
        return gc.likelihood_lower_bound(lik) if gc.use_likelihood_bound else lik

    # -- training pass ------------------------------------------------------------
    def forward(self, x: torch.Tensor, semantics: torch.Tensor, *, noise: bool | None = None) -> dict[str, Any]:
        """``x``: B×3×H×W in [0, 1]; ``semantics``: one-hot B×S×H/16×W/16.

        Returns ``x_hat`` (unclamped), ``y_hat`` and the likelihoods of ŷ and ẑ.
        ``noise`` (default: ``self.training``) selects uniform noise vs rounding.
        """
        noise = self.training if noise is None else noise
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat, z_lik = self.entropy_bottleneck(z, training=noise)
        params = self.h_s(z_hat)
        y_hat = self.gaussian_conditional.quantize(y, "noise" if noise else "dequantize")
        scales, means, weights = self.gmm_parameters(params, self.context_prediction(y_hat))
        y_lik = self.likelihood(y_hat, scales, means, weights)
        x_hat = self.g_s(y_hat, semantics)
        return {"x_hat": x_hat, "y_hat": y_hat, "likelihoods": {"y": y_lik, "z": z_lik}}

    def masked_context_weight(self) -> torch.Tensor:
        return self.context_prediction.weight * self.context_prediction.mask


# --------------------------------------------------------------------------- discriminator


class PatchDiscriminator(nn.Module):
    """pix2pixHD N-layer patch discriminator (4×4 convs, instance norm, LeakyReLU)."""

    def __init__(self, in_channels: int, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 2), nn.LeakyReLU(0.2, True)]
        ch = width
        for i in range(1, layers + 1):
            nxt = min(ch * 2, width * 8)
            stride = 2 if i < layers else 1
            seq += [nn.Conv2d(ch, nxt, 4, stride, 2), nn.InstanceNorm2d(nxt), nn.LeakyReLU(0.2, True)]
            ch = nxt
        seq.append(nn.Conv2d(ch, 1, 4, 1, 2))
        self.net = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiScaleDiscriminator(nn.Module):
    """D1, D2, D3 on the image ⊕ one-hot full-resolution label map at 1, 1/2, 1/4 scale."""

    def __init__(self, num_symbols: int, width: int = 64, scales: int = 3) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PatchDiscriminator(3 + num_symbols, width) for _ in range(scales))

    def forward(self, image: torch.Tensor, semantics: torch.Tensor) -> list[torch.Tensor]:
        """``image`` in [0, 1] (B×3×H×W), ``semantics`` one-hot B×S×H×W → patch scores per scale."""
        outs = []
        x, s = image * 2 - 1, semantics
        for i, d in enumerate(self.discriminators):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
                s = F.interpolate(s, size=x.shape[-2:], mode="nearest")
            outs.append(d(torch.cat((x, s), dim=1)))
        return outs
