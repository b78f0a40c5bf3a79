"""Content-addressed cache of reference-side work (features, segmentations of ORIGINALS).

Work on an original image (its Inception features, its label map from a segmenter) does
not depend on the codec or the rate point, so it is computed once per image and reused
for every codec × rate. The key is

    sha256("bench-refcache-v1" ‖ extractor id ‖ dtype ‖ shape ‖ image bytes)

where the extractor id names the network, its weights' sha256 and its input protocol
(e.g. ``"inception-v3-compat/pool3@6726825d…/whole"``). A value is one ``np.ndarray``
(stored as ``.npy``) or a ``dict[str, np.ndarray]`` (stored as ``.npz``).

Two levels: an in-memory LRU and an on-disk store (default ``results/cache/`` under the
current directory, or ``$BENCH_CACHE_DIR``); disk writes are atomic (temporary file +
rename), so concurrent runs sharing a cache directory never see half-written files.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench")

Value = np.ndarray | dict[str, np.ndarray]

DEFAULT_DIR = Path("results") / "cache"
ENV_DIR = "BENCH_CACHE_DIR"
_KEY_VERSION = b"bench-refcache-v1"


def default_dir() -> Path:
    """``$BENCH_CACHE_DIR`` if set, else ``results/cache`` under the current directory."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else Path.cwd() / DEFAULT_DIR


def image_key(image: np.ndarray, extractor_id: str) -> str:
    """sha256 hex key of (image content, extractor id); the same pixels give the same key."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256()
    h.update(_KEY_VERSION + b"\0")
    h.update(extractor_id.encode() + b"\0")
    h.update(f"{arr.dtype.str}{arr.shape}".encode() + b"\0")
    h.update(arr.data)
    return h.hexdigest()


@dataclass
class CacheStats:
    """Counters: ``hits`` (memory or disk), ``disk_hits`` (the part of hits read from
    disk), ``misses`` (not cached anywhere), ``computes`` (calls of the compute function)."""

    hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    computes: int = 0


def _copy(value: Value) -> Value:
    if isinstance(value, dict):
        return {k: np.array(v, copy=True) for k, v in value.items()}
    return np.array(value, copy=True)


def _as_value(value: object) -> Value:
    if isinstance(value, dict):
        return {str(k): np.asarray(v) for k, v in value.items()}
    return np.asarray(value)


class RefCache:
    """Memory LRU (``capacity`` entries) in front of an optional disk store.

    ``root``: the disk folder (None: :func:`default_dir`); ``persist=False`` keeps
    everything in memory only (for reconstruction-side memos that are worthless later).
    """

    def __init__(self, root: Path | str | None = None, *, capacity: int = 256, persist: bool = True) -> None:
        self.root = Path(root).expanduser() if root is not None else default_dir()
        self.persist = persist
        self.capacity = max(0, int(capacity))
        self.stats = CacheStats()
        self._memory: OrderedDict[str, Value] = OrderedDict()

    # counters, as attributes for short test code
    @property
    def hits(self) -> int:
        return self.stats.hits

    @property
    def misses(self) -> int:
        return self.stats.misses

    @property
    def computes(self) -> int:
        return self.stats.computes

    def __len__(self) -> int:
        return len(self._memory)

    # -- disk ------------------------------------------------------------------------
    def _path(self, key: str, suffix: str) -> Path:
        return self.root / key[:2] / f"{key}{suffix}"

    def _read(self, key: str) -> Value | None:
        if not self.persist:
            return None
        for suffix in (".npy", ".npz"):
            path = self._path(key, suffix)
            if not path.is_file():
                continue
            try:
                if suffix == ".npy":
                    return np.load(path, allow_pickle=False)
                with np.load(path, allow_pickle=False) as npz:
                    return {name: npz[name] for name in npz.files}
            except (OSError, ValueError, EOFError) as err:  # truncated / foreign file: recompute
                log.warning("refcache: ignoring unreadable %s (%s)", path, err)
        return None

    def _write(self, key: str, value: Value) -> None:
        if not self.persist:
            return
        suffix = ".npz" if isinstance(value, dict) else ".npy"
        path = self._path(key, suffix)
        buf = io.BytesIO()
        if isinstance(value, dict):
            arrays: dict[str, Any] = dict(value)
            np.savez(buf, **arrays)
        else:
            np.save(buf, value, allow_pickle=False)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(buf.getvalue())
                os.replace(tmp, path)  # atomic on POSIX and Windows
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as err:  # a read-only or full disk must not stop the run
            log.warning("refcache: cannot write %s (%s); keeping it in memory only", path, err)

    # -- memory ----------------------------------------------------------------------
    def _remember(self, key: str, value: Value) -> None:
        if self.capacity == 0:
            return
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > self.capacity:
            self._memory.popitem(last=False)

    # -- public API ------------------------------------------------------------------
    def get(self, image: np.ndarray, extractor_id: str) -> Value | None:
        """The cached value (a copy), or None; counts a hit or a miss."""
        key = image_key(image, extractor_id)
        if key in self._memory:
            self._memory.move_to_end(key)
            self.stats.hits += 1
            return _copy(self._memory[key])
        value = self._read(key)
        if value is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        self.stats.disk_hits += 1
        self._remember(key, value)
        return _copy(value)

    def put(self, image: np.ndarray, extractor_id: str, value: Value) -> None:
        """Store ``value`` for (image, extractor id) in memory and on disk."""
        key = image_key(image, extractor_id)
        value = _copy(_as_value(value))
        self._remember(key, value)
        self._write(key, value)

    def get_or_compute(self, image: np.ndarray, extractor_id: str, fn: Callable[[], object]) -> Value:
        """The cached value for (image, extractor id); on a miss ``fn()`` is called once,
        its result (an array or a dict of arrays) is stored and returned."""
        cached = self.get(image, extractor_id)
        if cached is not None:
            return cached
        self.stats.computes += 1
        value = _as_value(fn())
        self.put(image, extractor_id, value)
        return _copy(value)

    def clear_memory(self) -> None:
        """Forget the in-memory entries (the disk store stays)."""
        self._memory.clear()


_DEFAULT: dict[Path, RefCache] = {}


def default_cache() -> RefCache:
    """The process-wide cache for :func:`default_dir` (one per directory)."""
    root = default_dir().resolve()
    if root not in _DEFAULT:
        _DEFAULT[root] = RefCache(root)
    return _DEFAULT[root]
