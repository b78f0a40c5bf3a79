"""Byte parts of a CompressAI zoo bitstream.

``model.compress(x)`` returns ``{"strings": [[y_bytes], [z_bytes]], "shape": (h, w)}`` (one
string per latent for a batch of one; the factorized prior has only ``y``). Each string
becomes its own part (``y``, ``z`` → ``bpp_y``, ``bpp_z`` in the rows) and a 10-byte
``header`` part carries what the receiver needs besides the strings:

=====  =======  ==============================================================
byte   type     field
=====  =======  ==============================================================
0      uint8    format version (low 4 bits, = 1); bit 7 set when encoded on CUDA
1      uint8    zoo quality index (1–8)
2–5    2×u16    image height, width (px, before padding), big-endian
6–9    2×u16    ``shape`` given to ``model.decompress`` (latent h, w), big-endian
=====  =======  ==============================================================

The header counts as transmitted bytes like the strings.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import CodecError

FORMAT_VERSION = 1
LATENTS = ("y", "z")  # the order of CompressAI's "strings" list
_HEADER = struct.Struct(">BBHHHH")
_CUDA_BIT = 0x80


@dataclass(frozen=True)
class Header:
    """What the receiver needs besides the strings. ``on_cuda``: the encoder's device type."""

    quality: int
    height: int
    width: int
    shape: tuple[int, int]
    on_cuda: bool = False


def pack(header: Header, strings: Sequence[Sequence[bytes]]) -> dict[str, bytes]:
    """``header`` + CompressAI's ``strings`` (batch of one) → ``{"header", "y"[, "z"]}``."""
    values = (header.height, header.width, *header.shape)
    if not all(0 < v < 1 << 16 for v in values) or not 0 < header.quality < 256:
        raise CodecError(f"compressai bitstream: sizes {values} / quality {header.quality} do not fit the header",
                         "code images smaller than 65536 px per side")
    if len(strings) > len(LATENTS) or any(len(s) != 1 for s in strings):
        raise CodecError(f"compressai bitstream: expected one string per latent, got {[len(s) for s in strings]}",
                         "encode one image at a time")
    flags = FORMAT_VERSION | (_CUDA_BIT if header.on_cuda else 0)
    parts = {"header": _HEADER.pack(flags, header.quality, *values)}
    parts.update({name: bytes(s[0]) for name, s in zip(LATENTS, strings)})
    return parts


def unpack(parts: Mapping[str, bytes], n_latents: int) -> tuple[Header, list[list[bytes]]]:
    """Byte parts → (:class:`Header`, strings as ``model.decompress`` takes them)."""
    names = LATENTS[:n_latents]
    missing = [n for n in ("header", *names) if n not in parts]
    if missing or len(parts["header"]) != _HEADER.size:
        raise CodecError(f"compressai bitstream: parts {sorted(parts)} lack {missing or 'a 10-byte header'}",
                         "give every part that encode wrote (header, y, z)")
    flags, quality, height, width, sh, sw = _HEADER.unpack(parts["header"])
    if flags & 0x0F != FORMAT_VERSION:
        raise CodecError(f"compressai bitstream version {flags & 0x0F}, this decoder reads {FORMAT_VERSION}",
                         "decode with the bench version that encoded it")
    header = Header(quality, height, width, (sh, sw), bool(flags & _CUDA_BIT))
    return header, [[bytes(parts[n])] for n in names]
