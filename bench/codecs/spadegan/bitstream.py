"""The real bitstream of the SPADE-GAN codec.

Parts (all bytes count towards bpp):

* ``header`` — 7 bytes, big-endian: image height and width (uint16 each, pixels), index of
  the checkpoint in the receiver's sorted tag list (uint8) and the symbol range ``a`` of ŷ
  (uint16): every ŷ element lies in [−a+1, a−1].
* ``z`` — the hyper-latent ẑ (H/64 × W/64 × N), compressai :class:`EntropyBottleneck`
  (learned factorised prior, rANS).
* ``y`` — the latent ŷ = round(y) (H/16 × W/16 × C_y), rANS-coded with the discretised
  Gaussian mixture whose parameters come from the hyperprior and the 5×5 masked-conv
  context of the already coded positions; per-element CDFs on the support [−a, a] are
  built by compressai's ``GaussianMixtureConditional._build_cdf`` (16-bit). Positions
  are coded in causal raster order, batched into independent wavefronts
  (:func:`.model.wavefronts`): the decoder is serial, as in Cheng et al.
* ``labels`` — the H/16 × W/16 label map, :mod:`.labelmap`'s autoregressive coder.

H and W are first padded (edge replication) to multiples of 64; the decoder crops back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from compressai.ans import BufferedRansEncoder, RansDecoder

from ...errors import CodecError
from .model import CONTEXT_KERNEL, LATENT_FACTOR, PAD_MULTIPLE, SpadeGANModel, single_thread, wavefronts, windows

_HEADER = struct.Struct(">HHBH")


@dataclass(frozen=True)
class Header:
    height: int  # original image height, pixels
    width: int
    model_index: int  # index of the checkpoint tag (sorted) on the receiver's side
    abs_max: int  # ŷ symbols lie in [-abs_max + 1, abs_max - 1]

    @property
    def padded(self) -> tuple[int, int]:
        return padded_size(self.height, self.width)

    @property
    def latent_size(self) -> tuple[int, int]:
        ph, pw = self.padded
        return ph // LATENT_FACTOR, pw // LATENT_FACTOR

    def pack(self) -> bytes:
        try:
            return _HEADER.pack(self.height, self.width, self.model_index, self.abs_max)
        except struct.error as err:
            raise CodecError(f"header field out of range: {self}", "images must be < 65536 px a side") from err

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        if len(data) != _HEADER.size:
            raise CodecError(f"spadegan header has {len(data)} bytes, expected {_HEADER.size}",
                             "pass the parts exactly as encode() returned them")
        return cls(*_HEADER.unpack(data))


def padded_size(height: int, width: int) -> tuple[int, int]:
    return height + (-height) % PAD_MULTIPLE, width + (-width) % PAD_MULTIPLE


def _entropy_cdfs(model: SpadeGANModel, buf: torch.Tensor, params: torch.Tensor, rows: list[int],
                  cols: list[int], abs_max: int) -> torch.Tensor:
    """Integer CDFs [n·M, 2a+3] of the n positions (rows, cols), element order (position, channel)."""
    k, m = model.config.mixtures, model.config.latent_channels
    n = len(rows)
    ctx = F.conv2d(windows(buf, rows, cols, CONTEXT_KERNEL), model.masked_context_weight(),
                   model.context_prediction.bias)
    p = params[0][:, rows, cols].t().reshape(n, -1, 1, 1)
    scales, means, weights = model.gmm_parameters(p, ctx)

    def flat(t: torch.Tensor) -> torch.Tensor:  # n×KM×1×1 → K×(n·M)
        return t.reshape(n, k, m).permute(1, 0, 2).reshape(k, n * m).contiguous()

    return model.gaussian_conditional._build_cdf(flat(scales), flat(means), flat(weights), abs_max)


@torch.no_grad()
def compress_latents(model: SpadeGANModel, x: torch.Tensor) -> tuple[bytes, bytes, int, torch.Tensor]:
    """``x``: 1×3×H×W in [0, 1], H and W multiples of 64 → (y bytes, z bytes, a, ŷ)."""
    model.eval()
    y = model.g_a(x)
    z = model.h_a(y)
    y_hat = torch.round(y)
    abs_max = max(1, int(y_hat.abs().max().item()) + 1)
    _, m, h, w = y_hat.shape
    pad = CONTEXT_KERNEL // 2
    buf = torch.zeros(1, m, h + 2 * pad, w + 2 * pad)
    enc = BufferedRansEncoder()
    with single_thread():
        z_bytes = model.entropy_bottleneck.compress(z)[0]
        z_hat = model.entropy_bottleneck.decompress([z_bytes], z.shape[-2:])
        params = model.h_s(z_hat)
        _code_fronts(model, buf, params, abs_max, y_hat=y_hat, encoder=enc)
    return enc.flush(), z_bytes, abs_max, y_hat


def _code_fronts(model: SpadeGANModel, buf: torch.Tensor, params: torch.Tensor, abs_max: int, *,
                 y_hat: torch.Tensor | None = None, encoder: BufferedRansEncoder | None = None,
                 decoder: RansDecoder | None = None) -> None:
    """Code ŷ front by front, filling ``buf`` (padded ŷ) as the decoder would."""
    _, m, hp, wp = buf.shape
    pad = CONTEXT_KERNEL // 2
    for rows, cols in wavefronts(hp - 2 * pad, wp - 2 * pad):
        cdf = _entropy_cdfs(model, buf, params, rows, cols, abs_max)
        count = cdf.shape[0]
        if encoder is not None:
            vals = y_hat[0][:, rows, cols]  # type: ignore[index]  # y_hat is given exactly when encoder is set; M×n
            symbols = (vals.t().reshape(-1) + abs_max).int().tolist()
            encoder.encode_with_indexes(symbols, list(range(count)), cdf.tolist(), [cdf.shape[1]] * count,
                                        [0] * count)
        else:
            out = decoder.decode_stream(list(range(count)), cdf.tolist(), [cdf.shape[1]] * count,  # type: ignore[union-attr]  # decoder is set exactly when encoder is None
                                        [0] * count)
            vals = (torch.tensor(out, dtype=torch.float32) - abs_max).reshape(len(rows), m).t()
        buf[0][:, [r + pad for r in rows], [c + pad for c in cols]] = vals


@torch.no_grad()
def decompress_latents(model: SpadeGANModel, y_bytes: bytes, z_bytes: bytes, abs_max: int,
                       latent_size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`compress_latents`: ŷ as a 1×C_y×h×w float tensor of integers."""
    model.eval()
    h, w = latent_size
    m = model.config.latent_channels
    pad = CONTEXT_KERNEL // 2
    buf = torch.zeros(1, m, h + 2 * pad, w + 2 * pad)
    dec = RansDecoder()
    dec.set_stream(y_bytes)
    with single_thread():
        z_hat = model.entropy_bottleneck.decompress([z_bytes], (h // 4, w // 4))
        params = model.h_s(z_hat)
        _code_fronts(model, buf, params, abs_max, decoder=dec)
    return buf[:, :, pad:pad + h, pad:pad + w].contiguous()
