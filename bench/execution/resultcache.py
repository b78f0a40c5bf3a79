"""Content-addressed cache of coded results and metric results, across runs.

Keys are content hashes, so adding a rate point or a codec to a finished evaluation
computes only what is new, whatever the run id:

* ``sample_key``  = sha256(image pixels, shape, label map)            — what was coded
* ``coded_key``   = sha256(sample_key, codec identity, rate label)    — one encode+decode
* ``metric_key``  = sha256(coded_key, metric identity)                — one metric update

A codec's identity is its ``describe()`` (version, params, checkpoint sha256); a metric's
is its ``describe()`` (version, weights sha256, protocol, random-weights flag). Only
successful results are cached; failures are retried by later runs. Tables live in the
run store's SQLite file.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.datasets.base import Sample
from bench.metrics.base import State
from bench.storage.store import pack_states, unpack_states

SCHEMA = """
CREATE TABLE IF NOT EXISTS coded_cache (
    key     TEXT PRIMARY KEY,
    bytes   TEXT NOT NULL,   -- JSON {part: n_bytes}
    notes   TEXT NOT NULL,   -- JSON notes of the codec (numbers and text)
    seconds TEXT NOT NULL,   -- JSON {encode, decode}
    recon   BLOB             -- PNG of the reconstruction when reconstructions are kept
);
CREATE TABLE IF NOT EXISTS metric_cache (
    key     TEXT PRIMARY KEY,
    mvalues TEXT NOT NULL,   -- JSON per-image values
    state   BLOB NOT NULL,   -- npz of the per-image state
    seconds REAL NOT NULL
);
"""


def _sha(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def identity(obj: Any) -> str:
    """Canonical JSON of a component's ``describe()``."""
    return json.dumps(obj.describe(), sort_keys=True, default=str)


def sample_key(sample: Sample) -> str:
    img = np.ascontiguousarray(sample.image)
    parts: list[bytes | str] = ["sample-v1", f"{img.dtype.str}{img.shape}", img.tobytes()]
    if sample.labels is not None:
        lab = np.ascontiguousarray(sample.labels)
        parts += [f"{lab.dtype.str}{lab.shape}", str(sample.meta.get("class_set")), lab.tobytes()]
    for name in sorted(getattr(sample, "alt_labels", None) or {}):  # ground truth in other class sets
        alt = np.ascontiguousarray(sample.alt_labels[name])
        parts += [f"alt:{name}{alt.dtype.str}{alt.shape}", alt.tobytes()]
    return _sha(*parts)


def coded_key(skey: str, codec_identity: str, rate_label: str) -> str:
    return _sha("coded-v1", skey, codec_identity, rate_label)


def metric_key(ckey: str, metric_identity: str) -> str:
    return _sha("metric-v1", ckey, metric_identity)


@dataclass
class CodedEntry:
    bytes: dict[str, int]
    notes: dict[str, float | str]
    seconds: dict[str, float]
    recon: np.ndarray | None = None
    has_recon: bool = False  # a reconstruction is stored (read only with need_recon=True)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _unpng(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).copy()


class ResultCache:
    """Coded and metric results by content key, in an SQLite connection (the run store's)."""

    def __init__(self, db: sqlite3.Connection, *, keep_reconstructions: bool = False) -> None:
        self.db = db
        self.keep_reconstructions = keep_reconstructions
        self.db.executescript(SCHEMA)

    def get_coded(self, key: str, *, need_recon: bool = False) -> CodedEntry | None:
        """The coded entry of ``key``; the stored reconstruction (PNG) is read and decoded only
        with ``need_recon`` (None then when there is none)."""
        recon = "recon" if need_recon else "recon IS NOT NULL"
        row = self.db.execute(f"SELECT bytes, notes, seconds, {recon} FROM coded_cache WHERE key = ?",
                              (key,)).fetchone()
        if row is None or (need_recon and row[3] is None):
            return None
        return CodedEntry(json.loads(row[0]), json.loads(row[1]), json.loads(row[2]),
                          _unpng(row[3]) if need_recon else None, has_recon=bool(row[3]))

    def put_coded(self, key: str, entry: CodedEntry) -> None:
        recon = _png(entry.recon) if (self.keep_reconstructions and entry.recon is not None) else None
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO coded_cache VALUES (?, ?, ?, ?, ?)",
                            (key, json.dumps(entry.bytes), json.dumps(entry.notes), json.dumps(entry.seconds), recon))

    def get_metric(self, key: str) -> tuple[dict[str, float], State, float] | None:
        row = self.db.execute("SELECT mvalues, state, seconds FROM metric_cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return json.loads(row[0]), unpack_states(row[1]).get("s", {}), float(row[2])

    def put_metric(self, key: str, values: dict[str, float], state: State, seconds: float) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO metric_cache VALUES (?, ?, ?, ?)",
                            (key, json.dumps(values, allow_nan=True), pack_states({"s": state}), seconds))
