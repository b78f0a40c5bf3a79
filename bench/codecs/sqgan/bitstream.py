"""SQ-GAN bitstream: the kept-token masks and code indices of both branches as real bytes.

Parts (all counted by the bench):

- ``header`` (5 bytes): format version (uint8), image height and width (uint16 each).
- ``image`` / ``semantic``: one branch each — ``k`` (uint16, tokens kept), a mode byte
  (mask coder in the low nibble, index coder in the high nibble), the mask payload
  (preceded by its LEB128 length when entropy-coded) and the index payload.

Mask coders: implied (k = 0 or k = N), raw (N bits), enumerative (p(kept) = kept left /
positions left, i.e. log2 C(N, k) bits) and context-adaptive (KT counts per left/up
neighbour context). Index coders (indices in raster order of the kept positions): raw
(⌈log2 K⌉ bits each) and adaptive count models (α = 1/2 and α = 1/32) via
:mod:`bench.codecs.entropy`. The smallest is chosen per branch, so a branch never takes more
than ``BRANCH_HEADER_BYTES`` over the official bound ⌈(⌈log2 K⌉·k + N)/8⌉ bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping

import numpy as np

from bench.codecs import entropy
from bench.codecs.entropy import read_varint, write_varint

from ...errors import CodecError
from .model import BranchTokens, Tokens

FORMAT_VERSION = 1
GLOBAL_HEADER_BYTES = 5
BRANCH_HEADER_BYTES = 3
#: Most bytes a full stream can exceed the rounded-up official bound by.
MAX_OVERHEAD_BYTES = GLOBAL_HEADER_BYTES + 2 * BRANCH_HEADER_BYTES

MASK_IMPLIED, MASK_RAW, MASK_ENUM, MASK_CONTEXT = 0, 1, 2, 3
IDX_RAW, IDX_KT, IDX_SPARSE = 0, 1, 2
_IDX_ALPHA = {IDX_KT: 0.5, IDX_SPARSE: 1 / 32}


# ----------------------------------------------------------------------------- bounds
def index_bits(codebook_size: int) -> int:
    return max(1, math.ceil(math.log2(codebook_size)))


def bound_bits(k: int, n_tokens: int = 512, codebook_size: int = 1024) -> int:
    """The official per-branch rate: ⌈log2 K⌉ bits per kept index + 1 bit per token."""
    return index_bits(codebook_size) * k + n_tokens


def bound_bpp(k: int, height: int = 256, width: int = 512, n_tokens: int = 512, codebook_size: int = 1024) -> float:
    """Per-branch bound in bits per pixel: (10·k + 512)/(256·512) for the official model."""
    return bound_bits(k, n_tokens, codebook_size) / (height * width)


# ----------------------------------------------------------------------------- helpers
def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    got = read_varint(data, pos)
    if got is None:
        raise CodecError("sqgan: truncated bitstream (length field)", "re-encode the image")
    return got


def _pack_uint(values: np.ndarray, bits: int) -> bytes:
    """Big-endian fixed-width bit packing."""
    if len(values) == 0:
        return b""
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return np.packbits(((values[:, None].astype(np.int64) >> shifts) & 1).astype(np.uint8).ravel()).tobytes()


def _unpack_uint(data: bytes, n: int, bits: int) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    raw = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n * bits)
    return (raw.reshape(n, bits).astype(np.int64) << np.arange(bits - 1, -1, -1, dtype=np.int64)).sum(1)


def _enum_weights(n: int, k: int, done: int, ones: int) -> list[int]:
    left = n - done
    return [left - (k - ones), k - ones]


def _context(bits: np.ndarray, i: int, width: int) -> int:
    left = int(bits[i - 1]) if i % width else 0
    up = int(bits[i - width]) if i >= width else 0
    return 2 * up + left


# ----------------------------------------------------------------------------- mask
def _mask_weights(mask: np.ndarray, mode: int, k: int, width: int) -> np.ndarray:
    """Integer weights [N, 2] the given adaptive mask model uses along ``mask``."""
    n = len(mask)
    w = np.zeros((n, 2), dtype=np.int64)
    if mode == MASK_ENUM:
        ones_before = np.concatenate([[0], np.cumsum(mask)[:-1]])
        left = n - np.arange(n)
        w[:, 1] = k - ones_before
        w[:, 0] = left - w[:, 1]
    else:
        counts = np.zeros((4, 2), dtype=np.int64)
        for i in range(n):
            c = _context(mask, i, width)
            w[i] = 2 * counts[c] + 1
            counts[c, int(mask[i])] += 1
    return w


def _decode_mask(data: bytes, mode: int, n: int, k: int, width: int) -> np.ndarray:
    dec = entropy.CategoricalDecoder(data)
    mask = np.zeros(n, dtype=np.int64)
    counts = np.zeros((4, 2), dtype=np.int64)
    ones = 0
    for i in range(n):
        if mode == MASK_ENUM:
            w = np.array(_enum_weights(n, k, i, ones), dtype=np.int64)
        else:
            c = _context(mask, i, width)
            w = 2 * counts[c] + 1
        bit = int(dec.decode_cdfs(entropy.weights_to_cdf(w[None]))[0])
        mask[i] = bit
        ones += bit
        if mode == MASK_CONTEXT:
            counts[c, bit] += 1
    return mask


# ----------------------------------------------------------------------------- branch
def encode_branch(tokens: BranchTokens, n_tokens: int, codebook_size: int, grid_width: int) -> bytes:
    """One branch → bytes (never more than ``BRANCH_HEADER_BYTES`` over the rounded bound)."""
    pos = np.asarray(tokens.positions, dtype=np.int64)
    idx = np.asarray(tokens.indices, dtype=np.int64)
    k = len(pos)
    if k != len(idx) or k > n_tokens or k > 0xFFFF or (k and (np.diff(pos) <= 0).any()):
        raise CodecError("sqgan: kept positions must be unique, ascending and match the indices",
                         "this is a bug in the SQ-GAN adapter")
    if k and (pos[0] < 0 or pos[-1] >= n_tokens or idx.min() < 0 or idx.max() >= codebook_size):
        raise CodecError("sqgan: token position or code index out of range", "check the model configuration")
    mask = np.zeros(n_tokens, dtype=np.int64)
    mask[pos] = 1
    bits = index_bits(codebook_size)

    if k in (0, n_tokens):
        mask_mode, mask_payload = MASK_IMPLIED, b""
    else:
        mask_mode, mask_payload = MASK_RAW, np.packbits(mask.astype(np.uint8)).tobytes()
        for mode in (MASK_ENUM, MASK_CONTEXT):
            coded = entropy.encode_cdfs(mask, entropy.weights_to_cdf(_mask_weights(mask, mode, k, grid_width)))
            coded = write_varint(len(coded)) + coded
            if len(coded) < len(mask_payload):
                mask_mode, mask_payload = mode, coded

    idx_mode, idx_payload = IDX_RAW, _pack_uint(idx, bits)
    for mode, alpha in _IDX_ALPHA.items():
        coded = entropy.encode_adaptive(idx, codebook_size, alpha) if k else b""
        if len(coded) < len(idx_payload):
            idx_mode, idx_payload = mode, coded
    return struct.pack(">HB", k, mask_mode | idx_mode << 4) + mask_payload + idx_payload


def decode_branch(data: bytes, n_tokens: int, codebook_size: int, grid_width: int) -> BranchTokens:
    """Inverse of :func:`encode_branch`."""
    if len(data) < BRANCH_HEADER_BYTES:
        raise CodecError("sqgan: truncated branch part", "re-encode the image")
    k, modes = struct.unpack(">HB", data[:BRANCH_HEADER_BYTES])
    mask_mode, idx_mode = modes & 0x0F, modes >> 4
    if k > n_tokens or mask_mode > MASK_CONTEXT or idx_mode > IDX_SPARSE:
        raise CodecError(f"sqgan: corrupt branch header (k={k}, modes={modes:#x}) for {n_tokens} tokens",
                         "the stream was made by a different model configuration or is corrupt")
    at = BRANCH_HEADER_BYTES
    if mask_mode == MASK_IMPLIED:
        mask = np.full(n_tokens, 1 if k == n_tokens else 0, dtype=np.int64)
    elif mask_mode == MASK_RAW:
        nbytes = (n_tokens + 7) // 8
        mask = np.unpackbits(np.frombuffer(data[at:at + nbytes], dtype=np.uint8), count=n_tokens).astype(np.int64)
        at += nbytes
    else:
        length, at = _read_varint(data, at)
        mask = _decode_mask(data[at:at + length], mask_mode, n_tokens, k, grid_width)
        at += length
    positions = np.flatnonzero(mask).astype(np.int64)
    if len(positions) != k:
        raise CodecError(f"sqgan: mask has {len(positions)} kept tokens, header says {k}", "the stream is corrupt")
    rest = data[at:]
    if idx_mode == IDX_RAW:
        indices = _unpack_uint(rest, k, index_bits(codebook_size))
    else:
        indices = entropy.decode_adaptive(rest, k, codebook_size, _IDX_ALPHA[idx_mode])
    return BranchTokens(positions, indices)


# ----------------------------------------------------------------------------- stream
def pack(tokens: Tokens, height: int, width: int, n_tokens: int, codebook_size: int, grid_width: int) -> dict[str, bytes]:
    """Both branches + the header as the codec's byte parts."""
    return {
        "header": struct.pack(">BHH", FORMAT_VERSION, height, width),
        "semantic": encode_branch(tokens.semantic, n_tokens, codebook_size, grid_width),
        "image": encode_branch(tokens.image, n_tokens, codebook_size, grid_width),
    }


def unpack(parts: Mapping[str, bytes], n_tokens: int, codebook_size: int,
           grid_width: int) -> tuple[Tokens, int, int]:
    """Parts → (tokens, height, width)."""
    missing = [p for p in ("header", "semantic", "image") if p not in parts]
    if missing:
        raise CodecError(f"sqgan: bitstream lacks part(s) {missing}", "pass every part that encode() returned")
    header = parts["header"]
    if len(header) != GLOBAL_HEADER_BYTES:
        raise CodecError("sqgan: bad header length", "the stream is corrupt")
    version, height, width = struct.unpack(">BHH", header)
    if version != FORMAT_VERSION:
        raise CodecError(f"sqgan: bitstream version {version}, this decoder reads {FORMAT_VERSION}",
                         "re-encode with this version of the adapter")
    decode: Callable[[bytes], BranchTokens] = lambda d: decode_branch(d, n_tokens, codebook_size, grid_width)
    return Tokens(image=decode(parts["image"]), semantic=decode(parts["semantic"])), height, width
