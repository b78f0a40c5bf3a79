"""Lossless entropy coding of categorical symbols, on top of compressai's rANS coder.

This is a thin layer: :mod:`compressai.ans` does the range-ANS coding; this module turns
probability tables into the 16-bit quantised CDFs it needs and offers an adaptive
(count-based) model for symbols without a learned prior.

CDF layout (what compressai expects): for an alphabet of ``K`` symbols a CDF has
``K + 2`` int32 entries ``0 = c[0] ≤ … ≤ c[K+1] = 2**16``; entry ``K`` is compressai's
escape symbol, which this module never uses but must keep a non-zero mass (1/2**16).
Every real symbol keeps a mass ≥ 1/2**16, so any symbol is codable whatever its pmf.

Determinism: the decoder rebuilds exactly the CDFs the encoder used. Quantisation is
row-wise and uses only sequential (cumulative) sums, so a row gives the same CDF whether
it is quantised alone or in a batch; the adaptive model works in integers throughout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PRECISION = 16  # compressai.ans codes with 16-bit CDFs; fixed in its C++ code
_PAD_SYMBOLS = 4

__all__ = [
    "PRECISION",
    "AdaptiveFrequencies",
    "CategoricalDecoder",
    "decode_adaptive",
    "encode_adaptive",
    "encode_categorical",
    "encode_cdfs",
    "pmf_to_cdf",
    "weights_to_cdf",
]


def _ans():
    from compressai import ans  # imported lazily: compiled extension

    return ans


def _check_precision(precision: int, k: int) -> None:
    if precision != PRECISION:
        raise ValueError(f"compressai's rANS coder works at precision {PRECISION}, got {precision}")
    if k < 1 or k + 1 > (1 << precision):
        raise ValueError(f"alphabet size {k} does not fit a {precision}-bit CDF")


def _finish(freqs: np.ndarray) -> np.ndarray:
    """[N, K] int64 frequencies (≥ 1, rows summing to 2**16 − 1) → [N, K+2] int32 CDFs."""
    n = freqs.shape[0]
    cdf = np.zeros((n, freqs.shape[1] + 2), dtype=np.int64)
    np.cumsum(freqs, axis=1, out=cdf[:, 1:-1])
    cdf[:, -1] = 1 << PRECISION  # escape symbol keeps mass 1
    return cdf.astype(np.int32)


def weights_to_cdf(weights: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Integer (exact) quantisation of non-negative integer weights [N, K] → CDFs [N, K+2].

    Each symbol gets ``1 + floor(w·A / W)`` where ``A = 2**precision − K − 1`` and ``W`` is
    the row total; the rounding remainder goes to the row's largest weight.
    """
    w = np.asarray(weights, dtype=np.int64)
    if w.ndim != 2:
        raise ValueError(f"weights must be [N, K], got shape {w.shape}")
    k = w.shape[1]
    _check_precision(precision, k)
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    total = np.cumsum(w, axis=1)[:, -1:]
    if (total <= 0).any():
        raise ValueError("every row of weights needs a positive total")
    avail = (1 << precision) - k - 1
    freqs = (w * avail) // total
    rows = np.arange(w.shape[0])
    freqs[rows, np.argmax(w, axis=1)] += avail - np.cumsum(freqs, axis=1)[:, -1]
    return _finish(freqs + 1)


def pmf_to_cdf(pmfs: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Quantise probability rows [N, K] (any positive scale, float) → int32 CDFs [N, K+2].

    Rows are normalised by their own total; every symbol keeps probability
    ≥ 1/2**precision, so any symbol stays codable. Negative or non-finite entries raise.
    """
    p = np.asarray(pmfs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"pmfs must be [N, K], got shape {p.shape}")
    k = p.shape[1]
    _check_precision(precision, k)
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("pmfs must be finite and non-negative")
    total = np.cumsum(p, axis=1)[:, -1:]  # sequential sum: identical alone or batched
    if (total <= 0).any():
        raise ValueError("every pmf row needs a positive total")
    avail = (1 << precision) - k - 1
    freqs = np.floor(p / total * avail).astype(np.int64)
    freqs = np.minimum(freqs, avail)
    rows = np.arange(p.shape[0])
    freqs[rows, np.argmax(p, axis=1)] += avail - np.cumsum(freqs, axis=1)[:, -1]
    return _finish(freqs + 1)


def encode_cdfs(symbols: np.ndarray, cdfs: np.ndarray) -> bytes:
    """rANS-code ``symbols`` [N] with their CDFs [N, K+2].

    An rANS encoder only uses a symbol's interval ``[cdf[s], cdf[s+1])``, so each symbol
    is handed to compressai as a 3- or 4-entry CDF holding just that interval (valid:
    starts at 0, strictly increasing, ends at 2**16). The bytes are identical to coding
    with the full tables, and the cost is O(N) instead of O(N·K) Python integers.
    """
    s = np.asarray(symbols, dtype=np.int64).reshape(-1)
    cdfs = np.asarray(cdfs)
    if len(s) != len(cdfs):
        raise ValueError(f"{len(s)} symbols but {len(cdfs)} CDFs")
    k = cdfs.shape[1] - 2
    if len(s) == 0:
        return b""
    if s.min() < 0 or s.max() >= k:
        raise ValueError(f"symbols must lie in [0, {k}), got range [{s.min()}, {s.max()}]")
    rows = np.arange(len(s))
    starts, ends = cdfs[rows, s].tolist(), cdfs[rows, s + 1].tolist()
    top = 1 << PRECISION
    tables, sizes, values = [], [], []
    for lo, hi in zip(starts, ends):
        table = [0, hi, top] if lo == 0 else [0, lo, hi, top]
        tables.append(table)
        sizes.append(len(table))
        values.append(len(table) - 3)  # the interval's index in its table
    # compressai's RansEncoder sizes its output buffer by the symbol count (one 32-bit word
    # per symbol) and then writes the 2-word final state: with very few symbols that
    # overflows the heap. Trailing padding symbols of probability 1 − 2**-16 (never decoded,
    # ~0 bits each) keep the buffer large enough.
    table = [0, top - 1, top]
    tables += [table] * _PAD_SYMBOLS
    sizes += [3] * _PAD_SYMBOLS
    values += [0] * _PAD_SYMBOLS
    n = len(values)
    return _ans().RansEncoder().encode_with_indexes(values, list(range(n)), tables, sizes, [0] * n)


def encode_categorical(symbols: np.ndarray, pmfs: np.ndarray) -> bytes:
    """rANS-code ``symbols`` [N] (ints in [0, K)) with one pmf row per symbol ([N, K])."""
    return encode_cdfs(symbols, pmf_to_cdf(pmfs))


class CategoricalDecoder:
    """Incremental decoder of a stream written by :func:`encode_categorical`.

    Call :meth:`decode` repeatedly with the pmfs of the next symbols (they may depend on
    the symbols already decoded); the pmfs must equal those the encoder used.
    """

    def __init__(self, data: bytes) -> None:
        self._dec = _ans().RansDecoder()
        self._dec.set_stream(data)

    def decode_cdfs(self, cdfs: np.ndarray) -> np.ndarray:
        """Decode ``len(cdfs)`` symbols given their quantised CDFs [n, K+2]."""
        n = len(cdfs)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        k = cdfs.shape[1] - 2
        out = self._dec.decode_stream(list(range(n)), np.asarray(cdfs).tolist(), [k + 2] * n, [0] * n)
        return np.asarray(out, dtype=np.int64)

    def decode(self, pmfs: np.ndarray) -> np.ndarray:
        """Decode ``n`` symbols given their pmfs [n, K]; returns int64 [n]."""
        return self.decode_cdfs(pmf_to_cdf(pmfs))


class AdaptiveFrequencies:
    """Count-based adaptive model over ``K`` symbols: p(s) ∝ count(s) + alpha.

    ``alpha = 1/2`` is Krichevsky–Trofimov, ``alpha = 1`` Laplace; a small alpha suits
    large alphabets where few symbols occur. Alpha is kept as a fraction
    ``alpha_num/alpha_den`` so that all arithmetic is exact integers.
    """

    def __init__(self, k: int, alpha: float = 0.5, *, alpha_den: int = 64) -> None:
        if k < 1:
            raise ValueError("alphabet size must be ≥ 1")
        self.k = k
        self.alpha_den = alpha_den
        self.alpha_num = max(1, round(alpha * alpha_den))
        self.counts = np.zeros(k, dtype=np.int64)

    @property
    def alpha(self) -> float:
        return self.alpha_num / self.alpha_den

    def weights(self) -> np.ndarray:
        """Integer weights [K] proportional to the current pmf."""
        return self.counts * self.alpha_den + self.alpha_num

    def pmf(self) -> np.ndarray:
        w = self.weights().astype(np.float64)
        return w / w.sum()

    def cdf(self) -> np.ndarray:
        """The current quantised CDF [K+2] (what the coder uses)."""
        return weights_to_cdf(self.weights()[None])[0]

    def update(self, symbol: int) -> None:
        self.counts[symbol] += 1

    def history_weights(self, symbols: np.ndarray) -> np.ndarray:
        """Weights [N, K] the model has before each of ``symbols`` (does not update)."""
        s = np.asarray(symbols, dtype=np.int64).reshape(-1)
        onehot = np.zeros((len(s), self.k), dtype=np.int64)
        onehot[np.arange(len(s)), s] = 1
        before = np.cumsum(onehot, axis=0) - onehot + self.counts
        return before * self.alpha_den + self.alpha_num


_CHUNK_ELEMENTS = 1 << 22  # bound memory of the [N, K] tables when encoding


def adaptive_cdfs(symbols: np.ndarray, k: int, alpha: float = 0.5) -> np.ndarray:
    """The CDFs [N, K+2] an :class:`AdaptiveFrequencies` model uses along ``symbols``."""
    s = np.asarray(symbols, dtype=np.int64).reshape(-1)
    if len(s) and (s.min() < 0 or s.max() >= k):
        raise ValueError(f"symbols must lie in [0, {k}), got range [{s.min()}, {s.max()}]")
    model = AdaptiveFrequencies(k, alpha)
    rows = max(1, _CHUNK_ELEMENTS // k)
    out = []
    for start in range(0, len(s), rows):
        chunk = s[start:start + rows]
        out.append(weights_to_cdf(model.history_weights(chunk)))
        np.add.at(model.counts, chunk, 1)
    return np.concatenate(out) if out else np.zeros((0, k + 2), dtype=np.int32)


def encode_adaptive(symbols: np.ndarray, k: int, alpha: float = 0.5) -> bytes:
    """rANS-code ``symbols`` (ints in [0, K)) with an adaptive count model (no side info)."""
    return encode_cdfs(np.asarray(symbols).reshape(-1), adaptive_cdfs(symbols, k, alpha))


def decode_adaptive(data: bytes, n: int, k: int, alpha: float = 0.5) -> np.ndarray:
    """Inverse of :func:`encode_adaptive`: ``n`` symbols as int64 [n]."""
    model = AdaptiveFrequencies(k, alpha)
    dec = CategoricalDecoder(data) if n else None
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        s = int(dec.decode_cdfs(model.cdf()[None])[0])  # type: ignore[union-attr]  # dec is None only when n == 0, and then the loop does not run
        out[i] = s
        model.update(s)
    return out


def empirical_entropy_bits(symbols: Sequence[int] | np.ndarray) -> float:
    """N · H(empirical distribution) in bits: the size of an ideal static code."""
    s = np.asarray(symbols).reshape(-1)
    if len(s) == 0:
        return 0.0
    _, counts = np.unique(s, return_counts=True)
    p = counts / len(s)
    return float(-(counts * np.log2(p)).sum())


def write_varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, high bit set on all but the last byte."""
    if n < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """(value, position after it) of the LEB128 varint at ``pos``; None when truncated."""
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
    return None
