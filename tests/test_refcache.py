"""RefCache: content addressing, counters, LRU, atomic on-disk store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.runtime.refcache import RefCache, default_cache, default_dir, image_key


def _image(seed: int = 0, shape: tuple[int, ...] = (8, 10, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


class Counter:
    def __init__(self, value: object) -> None:
        self.calls = 0
        self.value = value

    def __call__(self) -> object:
        self.calls += 1
        return self.value


def test_computes_once_per_content_and_extractor(tmp_path: Path) -> None:
    cache = RefCache(tmp_path)
    img = _image()
    fn = Counter(np.arange(4.0))
    for _ in range(5):
        out = cache.get_or_compute(img, "net@abc/whole", fn)
        np.testing.assert_array_equal(out, np.arange(4.0))
    assert fn.calls == 1
    assert (cache.computes, cache.misses, cache.hits) == (1, 1, 4)

    # the same pixels in another array object: a hit; one changed pixel or another extractor: a miss
    cache.get_or_compute(img.copy(), "net@abc/whole", fn)
    assert fn.calls == 1
    changed = img.copy()
    changed[0, 0, 0] ^= 1
    cache.get_or_compute(changed, "net@abc/whole", fn)
    cache.get_or_compute(img, "net@abc/patch256", fn)
    assert fn.calls == 3 and cache.computes == 3


def test_key_depends_on_shape_and_dtype() -> None:
    img = _image(shape=(4, 6, 3))
    assert image_key(img, "x") == image_key(img.copy(), "x")
    assert image_key(img, "x") != image_key(img.reshape(6, 4, 3), "x")
    assert image_key(img, "x") != image_key(img.astype(np.uint16), "x")
    assert image_key(img, "x") != image_key(img, "y")


def test_disk_store_survives_a_new_process_and_is_atomic(tmp_path: Path) -> None:
    img = _image(1)
    first = RefCache(tmp_path)
    first.get_or_compute(img, "seg@1", Counter({"labels": np.full((8, 10), 3, np.uint8), "n": np.array(2)}))
    first.get_or_compute(img, "feat@1", Counter(np.ones((1, 5))))
    files = sorted(p.suffix for p in tmp_path.rglob("*") if p.is_file())
    assert files == [".npy", ".npz"]  # no temporary files left behind

    second = RefCache(tmp_path)  # empty memory: values come from disk
    never = Counter(None)
    seg = second.get_or_compute(img, "seg@1", never)
    feat = second.get_or_compute(img, "feat@1", never)
    assert never.calls == 0 and second.stats.disk_hits == 2 and second.computes == 0
    assert seg["labels"].dtype == np.uint8 and int(seg["labels"][0, 0]) == 3 and int(seg["n"]) == 2
    np.testing.assert_array_equal(feat, np.ones((1, 5)))


def test_corrupt_file_is_recomputed(tmp_path: Path) -> None:
    img = _image(2)
    RefCache(tmp_path).put(img, "f", np.zeros(3))
    (path,) = [p for p in tmp_path.rglob("*.npy")]
    path.write_bytes(b"not an npy file")
    fresh = RefCache(tmp_path)
    fn = Counter(np.full(3, 7.0))
    np.testing.assert_array_equal(fresh.get_or_compute(img, "f", fn), np.full(3, 7.0))
    assert fn.calls == 1
    np.testing.assert_array_equal(np.load(path), np.full(3, 7.0))  # rewritten


def test_lru_capacity_and_memory_only(tmp_path: Path) -> None:
    cache = RefCache(tmp_path / "unused", capacity=2, persist=False)
    imgs = [_image(i) for i in range(3)]
    for im in imgs:
        cache.get_or_compute(im, "f", Counter(np.zeros(1)))
    assert len(cache) == 2 and not (tmp_path / "unused").exists()
    fn = Counter(np.zeros(1))
    cache.get_or_compute(imgs[2], "f", fn)  # most recent: still there
    cache.get_or_compute(imgs[0], "f", fn)  # evicted: recomputed
    assert fn.calls == 1


def test_returned_values_are_copies(tmp_path: Path) -> None:
    cache = RefCache(tmp_path, persist=False)
    img = _image(3)
    out = cache.get_or_compute(img, "f", Counter(np.zeros(3)))
    out[:] = 99
    np.testing.assert_array_equal(cache.get(img, "f"), np.zeros(3))


def test_default_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_dir() == tmp_path / "results" / "cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_dir() == tmp_path / "elsewhere"
    cache = default_cache()
    assert cache is default_cache() and cache.root == (tmp_path / "elsewhere").resolve()
    cache.put(_image(4), "f", np.zeros(2))
    assert list((tmp_path / "elsewhere").rglob("*.npy"))
