"""Lossless coders for semantic label maps (H×W uint8 ids, any values 0..255).

* ``runs`` (this project's design, the default): a two-dimensional run coder in the spirit
  of fax "READ" coding, with adaptive context models and rANS (:mod:`bench.codecs.entropy`).
  Each row is a sequence of maximal runs. A run's end is coded relative to the next label
  change in the row above ("vertical" offset −3..+3, "skip" to the change after it, or an
  explicit exp-Golomb length); then its value as a rank in a candidate list built from what
  is known (values of the row above under the run, its neighbours, recently used values;
  the previous run's value is excluded because runs are maximal). Cost scales with the
  number of label changes, not pixels.
* ``jpegxl``: JPEG XL lossless (libjxl modular mode, through imagecodecs), effort 9, and
  ``png``: PNG, 8-bit grayscale, zlib level 9 with Pillow's ``optimize`` (both in
  :mod:`bench.codecs.spic.label_classic`, with the coder interface).

Every coder returns self-contained bytes (the size is in the header) and decodes exactly
the input (tests check this on real COCO-Stuff maps and synthetic Cityscapes-like maps).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

import numpy as np

from bench.codecs.entropy import read_varint, write_varint

from ...errors import CodecError, ConfigError
from .label_classic import JpegxlLabelCoder, LabelCoder, PngLabelCoder, check_labels

K = 16  # one alphabet for every symbol of the run coder (smaller models are padded)
_RANK_ESCAPE = K - 1  # ranks ≥ 15: the escape symbol, then the rank − 15 in 8 raw bits
_RAW_CHUNK = 4  # raw bits are sent 4 at a time as uniform symbols of the K-ary alphabet


# --------------------------------------------------------------------------- run coder
_V_MAX = 3  # vertical offsets −3..+3 → symbols 0..6
_SKIP, _HORIZ = 2 * _V_MAX + 1, 2 * _V_MAX + 2
_N_MODES = _HORIZ + 1


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    got = read_varint(data, pos)
    if got is None:
        raise CodecError("label map header is truncated", "pass the bytes from encode unchanged")
    return got


class _Model:
    """An adaptive count model (:class:`bench.codecs.entropy.AdaptiveFrequencies`) whose coding table
    is refreshed after each of its first 32 symbols, then after every 16th: the encoder and
    the decoder see the same tables, and the decoder quantises a table only when it changes."""

    def __init__(self, k: int, alpha: float) -> None:
        from bench.codecs.entropy import AdaptiveFrequencies

        self.freq = AdaptiveFrequencies(k, alpha)
        self.n = 0
        self._refresh()

    def _refresh(self) -> None:
        self.pmf = _padded(self.freq.weights())
        self._cdf: np.ndarray | None = None

    @property
    def cdf(self) -> np.ndarray:
        """The quantised table [1, K+2] (what :func:`bench.codecs.entropy.encode_categorical` derives from ``pmf``)."""
        if self._cdf is None:
            from bench.codecs.entropy import pmf_to_cdf

            self._cdf = pmf_to_cdf(self.pmf[None])
        return self._cdf

    def update(self, symbol: int) -> None:
        self.freq.update(symbol)
        self.n += 1
        if self.n <= 32 or self.n % 16 == 0:
            self._refresh()


class _Models:
    """The context models of the run coder (identical on both sides)."""

    def __init__(self, alpha: float) -> None:
        # mode: context = (previous mode in this row, what follows the next change above)
        self.mode = [_Model(_N_MODES, 0.5) for _ in range(18)]
        # rank of the run value: context = row 0 | how the end was coded × one value under the run
        self.rank = [_Model(K, alpha) for _ in range(7)]
        # exp-Golomb prefix (bit length of a run length − 1, < 16): row 0 or not
        self.length = [_Model(K, 0.5) for _ in range(2)]


def _mode_class(mode: int | None) -> int:
    if mode is None:
        return 0
    if mode == _V_MAX:
        return 1
    if mode in (_V_MAX - 1, _V_MAX + 1):
        return 2
    if mode < _SKIP:
        return 3
    return 4 if mode == _SKIP else 5


def _mode_context(prev_mode: int | None, ref_trans: list[int], k: int, w: int) -> int:
    """Class of the previous mode × whether the next change above, b1, is the row end (0),
    starts a run of ≤ 2 px above (1: a speck or thin line, often skipped) or a longer one (2)."""
    b1 = ref_trans[k]
    follow = 0 if b1 == w else (1 if ref_trans[k + 1] - b1 <= 2 else 2)
    return 3 * _mode_class(prev_mode) + follow


def _rank_context(first_row: bool, mode: int, skipped: bool, uniform: bool) -> int:
    if first_row:
        return 0
    kind = 2 if mode == _HORIZ else (1 if skipped else 0)
    return 1 + 2 * kind + int(uniform)


def _near_values(ref: np.ndarray, ref_trans: list[int], a0: int, end: int) -> tuple[list[int], bool]:
    """Values of the row above under [a0, end) by coverage (ties: leftmost first), then the
    values just left and right of it; and whether the span above is one value."""
    uniform = ref_trans[bisect_right(ref_trans, a0)] >= end
    if uniform:
        near = [int(ref[a0])]
    else:
        values, first, counts = np.unique(ref[a0:end], return_index=True, return_counts=True)
        near = [int(values[i]) for i in np.lexsort((first, -counts))]
    if a0 > 0:
        near.append(int(ref[a0 - 1]))
    if end < len(ref):
        near.append(int(ref[end]))
    return near, uniform


def _candidates(near: list[int], recent: list[int], exclude: int) -> Iterator[int]:
    """Values in prediction order, each once, never ``exclude`` (the previous run's value)."""
    seen = {exclude}
    for source in (near, recent, range(256)):
        for v in source:
            if v not in seen:
                seen.add(v)
                yield v


def _touch(recent: list[int], v: int) -> None:
    if recent and recent[0] == v:
        return
    if v in recent:
        recent.remove(v)
    recent.insert(0, v)


def _padded(weights: np.ndarray) -> np.ndarray:
    row = np.zeros(K, dtype=np.float64)
    row[: len(weights)] = weights
    return row


_UNIFORM = {bits: np.pad(np.ones(1 << bits), (0, K - (1 << bits))) for bits in range(1, _RAW_CHUNK + 1)}


class _Writer:
    """Collects (symbol, table) pairs; rANS-codes them in one call at the end."""

    def __init__(self) -> None:
        self.symbols: list[int] = []
        self.pmfs: list[np.ndarray] = []

    def put(self, model: _Model, symbol: int) -> None:
        self.symbols.append(symbol)
        self.pmfs.append(model.pmf)
        model.update(symbol)

    def put_raw(self, value: int, bits: int) -> None:
        while bits > 0:
            take = min(_RAW_CHUNK, bits)
            bits -= take
            self.symbols.append((value >> bits) & ((1 << take) - 1))
            self.pmfs.append(_UNIFORM[take])


class _Reader:
    def __init__(self, data: bytes) -> None:
        from bench.codecs.entropy import CategoricalDecoder, pmf_to_cdf

        self.dec = CategoricalDecoder(data)
        self.uniform_cdfs = {bits: pmf_to_cdf(row[None]) for bits, row in _UNIFORM.items()}

    def get(self, model: _Model) -> int:
        s = int(self.dec.decode_cdfs(model.cdf)[0])
        model.update(s)
        return s

    def get_raw(self, bits: int) -> int:
        value = 0
        while bits > 0:
            take = min(_RAW_CHUNK, bits)
            bits -= take
            value = (value << take) | int(self.dec.decode_cdfs(self.uniform_cdfs[take])[0])
        return value


def _transitions(row: np.ndarray) -> list[int]:
    """Positions p ≥ 1 where the value changes, then len(row) as the sentinel."""
    return (np.flatnonzero(row[1:] != row[:-1]) + 1).tolist() + [len(row)]


class RunLabelCoder:
    """Two-dimensional run coder (see the module docstring). ``alpha``: the adaptive models'
    prior count for rank symbols (small: few ranks occur)."""

    name = "runs"
    VERSION = 1

    def __init__(self, alpha: float = 1 / 32) -> None:
        self.alpha = float(alpha)

    @staticmethod
    def available() -> bool:
        try:
            from compressai import ans  # noqa: F401
        except ImportError:
            return False
        return True

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "library": f"bench.codecs.entropy (compressai rANS), run coder v{self.VERSION}",
                "settings": f"vertical ±{_V_MAX}, rank alpha {self.alpha:g}"}

    def encode(self, labels: np.ndarray) -> bytes:
        x = check_labels(labels)
        h, w = x.shape
        if max(h, w) >= 1 << 16:
            raise CodecError(f"label map {h}x{w} is too large for the run coder", "use label_coder: jpegxl")
        models, out = _Models(self.alpha), _Writer()
        recent: list[Any] = []
        ref: np.ndarray | None = None
        ref_trans = [w]
        for r in range(h):
            row = x[r]
            trans = _transitions(row)
            a0, prev_mode, prev_value = 0, None, -1
            for end in trans:
                # the run's end, relative to the next change b1 in the row above
                k, skipped = bisect_right(ref_trans, a0), False
                while True:
                    b1 = ref_trans[k]
                    ctx = _mode_context(prev_mode, ref_trans, k, w)
                    if abs(end - b1) <= _V_MAX:
                        mode = end - b1 + _V_MAX
                        out.put(models.mode[ctx], mode)
                        break
                    if end > b1:
                        out.put(models.mode[ctx], _SKIP)
                        prev_mode, k, skipped = _SKIP, k + 1, True
                        continue
                    mode = _HORIZ
                    out.put(models.mode[ctx], mode)
                    nbits = (end - a0).bit_length() - 1
                    out.put(models.length[int(r > 0)], nbits)
                    out.put_raw(end - a0 - (1 << nbits), nbits)
                    break
                # the run's value, as a rank among the candidates
                value = int(row[a0])
                near, uniform = _near_values(ref, ref_trans, a0, end) if ref is not None else ([], False)
                rank = next(i for i, v in enumerate(_candidates(near, recent, prev_value)) if v == value)
                out.put(models.rank[_rank_context(ref is None, mode, skipped, uniform)], min(rank, _RANK_ESCAPE))
                if rank >= _RANK_ESCAPE:
                    out.put_raw(rank - _RANK_ESCAPE, 8)
                _touch(recent, value)
                a0, prev_mode, prev_value = end, mode, value
            ref, ref_trans = row, trans
        from bench.codecs.entropy import encode_categorical

        body = encode_categorical(np.asarray(out.symbols, dtype=np.int64), np.stack(out.pmfs))
        return bytes([self.VERSION]) + write_varint(h) + write_varint(w) + body

    def decode(self, data: bytes) -> np.ndarray:
        if not data or data[0] != self.VERSION:
            raise CodecError(f"label map stream is not from run coder v{self.VERSION}",
                             "decode with the label coder that encoded it (see the codec's describe())")
        h, pos = _read_varint(data, 1)
        w, pos = _read_varint(data, pos)
        if not (0 < h < 1 << 16 and 0 < w < 1 << 16):
            raise CodecError(f"label map header gives size {h}x{w}", "the bytes are corrupt")
        x = np.empty((h, w), dtype=np.uint8)
        models, inp = _Models(self.alpha), _Reader(data[pos:])
        recent: list[Any] = []
        ref: np.ndarray | None = None
        ref_trans = [w]
        try:
            for r in range(h):
                row = x[r]
                a0, prev_mode, prev_value = 0, None, -1
                while a0 < w:
                    k, skipped = bisect_right(ref_trans, a0), False
                    while True:
                        ctx = _mode_context(prev_mode, ref_trans, k, w)
                        mode = inp.get(models.mode[ctx])
                        if mode == _SKIP:
                            prev_mode, k, skipped = _SKIP, k + 1, True
                            if k >= len(ref_trans):
                                raise ValueError("a skip past the row end")
                            continue
                        if mode == _HORIZ:
                            nbits = inp.get(models.length[int(r > 0)])
                            end = a0 + (1 << nbits) + inp.get_raw(nbits)
                        else:
                            end = ref_trans[k] + mode - _V_MAX
                        break
                    if not a0 < end <= w:
                        raise ValueError(f"a run [{a0}, {end}) in a row of {w}")
                    near, uniform = _near_values(ref, ref_trans, a0, end) if ref is not None else ([], False)
                    rank = inp.get(models.rank[_rank_context(ref is None, mode, skipped, uniform)])
                    if rank == _RANK_ESCAPE:
                        rank += inp.get_raw(8)
                    value = next(v for i, v in enumerate(_candidates(near, recent, prev_value)) if i == rank)
                    row[a0:end] = value
                    _touch(recent, value)
                    a0, prev_mode, prev_value = end, mode, value
                ref, ref_trans = row, _transitions(row)
        except (ValueError, RuntimeError, StopIteration) as err:
            raise CodecError(f"label map stream is corrupt: {err}", "pass the bytes from encode unchanged") from None
        return x


LABEL_CODERS = {"runs": RunLabelCoder, "jpegxl": JpegxlLabelCoder, "png": PngLabelCoder}


def make_label_coder(name: str) -> LabelCoder:
    """The label coder called ``name`` (``runs`` | ``jpegxl`` | ``png``)."""
    if name not in LABEL_CODERS:
        raise ConfigError(f"unknown label coder {name!r}", f"use one of {sorted(LABEL_CODERS)}")
    return LABEL_CODERS[name]()
