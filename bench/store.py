"""SQLite run store: one ``runs`` row per run, one ``rows`` row per image × codec × rate.

Each per-image row is committed as soon as it is computed (WAL journal), so a killed
run loses at most the image in flight, and re-running the same command resumes.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id     TEXT PRIMARY KEY,
    created    REAL NOT NULL,
    updated    REAL NOT NULL,
    config     TEXT NOT NULL,   -- JSON: what was asked (codecs, rates, dataset, metrics, limit)
    meta       TEXT NOT NULL,   -- JSON: provenance (git sha, versions, dataset hash, protocol)
    status     TEXT NOT NULL    -- running | finished
);
CREATE TABLE IF NOT EXISTS rows (
    run_id     TEXT NOT NULL REFERENCES runs(run_id),
    codec      TEXT NOT NULL,
    rate       TEXT NOT NULL,
    image_id   TEXT NOT NULL,
    status     TEXT NOT NULL,   -- ok | error
    error      TEXT,
    height     INTEGER,
    width      INTEGER,
    bytes      TEXT,            -- JSON {part: n_bytes}
    bpp        REAL,
    metrics    TEXT,            -- JSON {name: value}; per-image values
    states     BLOB,            -- npz of per-image metric states, arrays named "<metric>/<key>"
    seconds    TEXT,            -- JSON {encode, decode, metrics}
    created    REAL NOT NULL,
    notes      TEXT,            -- JSON text notes of the codec (semantics source, stand-ins)
    PRIMARY KEY (run_id, codec, rate, image_id)
);
"""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, allow_nan=True, default=str)


@dataclass
class Row:
    """One image × codec × rate result. ``bytes`` maps part name → byte count."""

    codec: str
    rate: str
    image_id: str
    status: str = "ok"
    error: str | None = None
    height: int | None = None
    width: int | None = None
    bytes: dict[str, int] = field(default_factory=dict)
    bpp: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # metric -> state
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


class Store:
    """A run store in one SQLite file (default ``results/bench.sqlite``)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=60)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as err:
            raise StoreError(f"cannot open run store {self.path}: {err}", "move the file away or pass --out DIR") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs -----------------------------------------------------------------------
    def begin_run(self, run_id: str, config: dict[str, Any], meta: dict[str, Any]) -> bool:
        """Create the run, or reopen it; returns True when it already existed (resume)."""
        now = time.time()
        cur = self.db.execute("SELECT run_id FROM runs WHERE run_id = ?", (run_id,))
        exists = cur.fetchone() is not None
        with self.db:
            if exists:
                self.db.execute(
                    "UPDATE runs SET updated = ?, meta = ?, status = 'running' WHERE run_id = ?",
                    (now, _dumps(meta), run_id),
                )
            else:
                self.db.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, 'running')",
                    (run_id, now, now, _dumps(config), _dumps(meta)),
                )
        return exists

    def update_meta(self, run_id: str, meta: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET meta = ?, updated = ? WHERE run_id = ?", (_dumps(meta), time.time(), run_id))

    def finish_run(self, run_id: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET status = 'finished', updated = ? WHERE run_id = ?", (time.time(), run_id))

    def runs(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT run_id, created, updated, config, meta, status FROM runs ORDER BY created")
        return [
            {"run_id": r[0], "created": r[1], "updated": r[2], "config": json.loads(r[3]),
             "meta": json.loads(r[4]), "status": r[5]}
            for r in cur.fetchall()
        ]

    def run(self, run_id: str) -> dict[str, Any]:
        """A run by id or unique id prefix; ``"latest"`` is the most recently updated."""
        runs = self.runs()
        if not runs:
            raise StoreError(f"no runs in {self.path}", "start one with `bench run`")
        if run_id == "latest":
            return max(runs, key=lambda r: r["updated"])
        hits = [r for r in runs if r["run_id"].startswith(run_id)]
        if len(hits) != 1:
            known = ", ".join(r["run_id"] for r in runs[-5:])
            raise StoreError(
                f"run {run_id!r} {'is ambiguous' if hits else 'not found'} in {self.path}",
                f"use `bench runs` to list them (latest: {known})",
            )
        return hits[0]

    # -- rows -----------------------------------------------------------------------
    def done_keys(self, run_id: str, *, include_errors: bool = True) -> set[tuple[str, str, str]]:
        """(codec, rate, image_id) of rows already stored."""
        sql = "SELECT codec, rate, image_id FROM rows WHERE run_id = ?"
        if not include_errors:
            sql += " AND status = 'ok'"
        return {tuple(r) for r in self.db.execute(sql, (run_id,))}  # type: ignore[misc]

    def put(self, run_id: str, row: Row) -> None:
        """Insert or replace one row and commit it at once."""
        states = pack_states(row.states) if row.states else None
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO rows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, row.codec, row.rate, row.image_id, row.status, row.error, row.height, row.width,
                 _dumps(row.bytes), row.bpp, _dumps(row.metrics), states, _dumps(row.seconds), time.time(), _dumps(row.notes)),
            )

    def rows(self, run_id: str) -> Iterator[Row]:
        cur = self.db.execute(
            "SELECT codec, rate, image_id, status, error, height, width, bytes, bpp, metrics, states, seconds, notes "
            "FROM rows WHERE run_id = ? ORDER BY codec, rate, image_id",
            (run_id,),
        )
        for r in cur:
            yield Row(
                codec=r[0], rate=r[1], image_id=r[2], status=r[3], error=r[4], height=r[5], width=r[6],
                bytes=json.loads(r[7] or "{}"), bpp=r[8], metrics=json.loads(r[9] or "{}"),
                states=unpack_states(r[10]) if r[10] else {},
                seconds=json.loads(r[11] or "{}"), notes=json.loads(r[12] or "{}"),
            )

    def count(self, run_id: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM rows WHERE run_id = ?", (run_id,)).fetchone()[0])


def pack_states(states: dict[str, dict[str, np.ndarray]]) -> bytes:
    """All metric states of one row as one npz blob (arrays named ``metric/key``)."""
    flat = {f"{metric}/{key}": np.asarray(v) for metric, st in states.items() for key, v in st.items()}
    buf = io.BytesIO()
    np.savez(buf, **flat)
    return buf.getvalue()


def unpack_states(blob: bytes) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        for name in npz.files:
            metric, _, key = name.partition("/")
            out.setdefault(metric, {})[key] = npz[name]
    return out
