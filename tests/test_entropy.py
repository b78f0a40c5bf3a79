"""bench.codecs.entropy: exact round trips and sizes against independently computed code lengths."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from bench.codecs import entropy as E


def _ideal_bits(symbols: np.ndarray, pmfs: np.ndarray) -> float:
    p = pmfs / pmfs.sum(axis=1, keepdims=True)
    return float(-np.log2(p[np.arange(len(symbols)), symbols]).sum())


def _kt_bits(symbols: np.ndarray, k: int, alpha: Fraction = Fraction(1, 2)) -> float:
    """Sequential code length of an adaptive count model, computed symbol by symbol."""
    counts = [0] * k
    bits = 0.0
    for n, s in enumerate(symbols.tolist()):
        bits -= math.log2((counts[s] + alpha) / (n + k * alpha))
        counts[s] += 1
    return bits


def test_pmf_to_cdf_layout_and_floor():
    rng = np.random.default_rng(0)
    pmfs = rng.dirichlet(np.full(6, 0.2), size=50)
    pmfs[0] = [1, 0, 0, 0, 0, 0]
    cdfs = E.pmf_to_cdf(pmfs)
    assert cdfs.shape == (50, 8) and cdfs.dtype == np.int32
    assert (cdfs[:, 0] == 0).all() and (cdfs[:, -1] == 1 << 16).all()
    assert (np.diff(cdfs, axis=1) >= 1).all()  # every symbol (and the escape) keeps mass ≥ 2**-16
    assert (np.diff(cdfs[0])[1:] == 1).all()  # zero-probability symbols get exactly the floor
    # quantised probabilities follow the pmf to within the floor
    q = np.diff(cdfs, axis=1)[:, :6] / 2**16
    assert np.abs(q - pmfs).max() < 7 / 2**16
    # a row quantises the same alone as in a batch (decoder rebuilds rows one at a time)
    for i in (0, 7, 49):
        assert (E.pmf_to_cdf(pmfs[i:i + 1])[0] == cdfs[i]).all()
    with pytest.raises(ValueError):
        E.pmf_to_cdf(pmfs, precision=12)
    with pytest.raises(ValueError):
        E.pmf_to_cdf(-pmfs)


@pytest.mark.parametrize("k", [2, 7, 300])
def test_categorical_roundtrip_incremental_and_size(k):
    rng = np.random.default_rng(k)
    n = 3000
    pmfs = rng.dirichlet(np.full(k, 0.3), size=n)
    symbols = np.array([rng.choice(k, p=p) for p in pmfs])
    data = E.encode_categorical(symbols, pmfs)
    dec = E.CategoricalDecoder(data)
    parts = [dec.decode(pmfs[:1]), dec.decode(pmfs[1:1000]), dec.decode(pmfs[1000:])]
    assert (np.concatenate(parts) == symbols).all()
    ideal = _ideal_bits(symbols, pmfs) / 8
    assert ideal - 1 <= len(data) <= ideal * 1.01 + 16


def test_bytes_equal_compressai_with_full_tables():
    """Interval-only tables give the very bytes compressai makes from the full CDFs
    (plus the 4 trailing padding symbols of probability 1 - 2**-16)."""
    from compressai.ans import RansEncoder

    rng = np.random.default_rng(3)
    pmfs = rng.dirichlet(np.ones(20), size=400)
    symbols = rng.integers(0, 20, 400)
    cdfs = E.pmf_to_cdf(pmfs).tolist() + [[0, 2**16 - 1, 2**16]]
    n = len(symbols)
    ref = RansEncoder().encode_with_indexes(symbols.tolist() + [0] * 4, list(range(n)) + [n] * 4, cdfs,
                                            [22] * n + [3], [0] * (n + 1))
    assert E.encode_categorical(symbols, pmfs) == ref


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_very_short_streams(n):
    """compressai's encoder overflows its buffer on 1-3 symbols unless padded."""
    pmfs = np.full((n, 1024), 1.0)
    symbols = (np.arange(n) * 397) % 1024
    data = E.encode_categorical(symbols, pmfs)
    assert (E.CategoricalDecoder(data).decode(pmfs) == symbols).all()
    assert len(data) <= math.ceil(10 * n / 32) * 4 + 8


def test_unlikely_symbols_are_codable():
    pmfs = np.zeros((3, 4))
    pmfs[:, 0] = 1.0
    symbols = np.array([3, 1, 2])
    assert (E.CategoricalDecoder(E.encode_categorical(symbols, pmfs)).decode(pmfs) == symbols).all()
    with pytest.raises(ValueError):
        E.encode_categorical(np.array([4, 0, 0]), pmfs)


@pytest.mark.parametrize("k,skew", [(2, 0.05), (2, 0.5), (16, 0.0), (16, 2.0), (1024, 0.0)])
def test_adaptive_roundtrip_and_size(k, skew):
    rng = np.random.default_rng(k + int(10 * skew))
    n = 2500 if k < 1024 else 600
    if k == 2:
        symbols = (rng.random(n) < skew).astype(np.int64)
    else:
        p = np.exp(-skew * np.arange(k))
        symbols = rng.choice(k, size=n, p=p / p.sum())
    data = E.encode_adaptive(symbols, k)
    assert (E.decode_adaptive(data, n, k) == symbols).all()
    kt = _kt_bits(symbols, k) / 8
    assert kt - 1 <= len(data) <= kt * 1.005 + 8  # the coder realises the model's code length
    if k < 1024:  # enough symbols to learn: close to the empirical entropy
        assert len(data) <= E.empirical_entropy_bits(symbols) / 8 * 1.03 + 8 + k
    assert len(data) <= n * math.log2(k) / 8 * 1.15 + 16


def test_adaptive_small_alpha_and_empty():
    rng = np.random.default_rng(1)
    symbols = rng.choice([3, 99, 512], size=400)
    small = E.encode_adaptive(symbols, 1024, alpha=1 / 64)
    assert (E.decode_adaptive(small, 400, 1024, alpha=1 / 64) == symbols).all()
    assert len(small) < len(E.encode_adaptive(symbols, 1024)) < 400 * 10 / 8
    assert E.encode_adaptive(np.zeros(0, dtype=int), 5) == b""
    assert E.decode_adaptive(b"", 0, 5).shape == (0,)


def test_adaptive_model_pmf_is_kt():
    m = E.AdaptiveFrequencies(3)
    for s in (0, 0, 2):
        m.update(s)
    assert np.allclose(m.pmf(), np.array([2.5, 0.5, 1.5]) / 4.5)
    cdf = m.cdf()
    assert cdf[0] == 0 and cdf[-1] == 1 << 16 and np.allclose(np.diff(cdf)[:3] / 2**16, m.pmf(), atol=4e-5)


def test_varint_round_trip_and_truncation():
    from bench.codecs.entropy import read_varint, write_varint

    for n in (0, 1, 127, 128, 300, 2**21, 2**40 + 5):
        data = b"\x07" + write_varint(n) + b"\xff"
        assert read_varint(data, 1) == (n, len(data) - 1)
    assert write_varint(300) == bytes([0xAC, 0x02])  # the LEB128 example
    assert read_varint(write_varint(2**20)[:-1], 0) is None
