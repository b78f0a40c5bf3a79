"""SQLite run store: one ``runs`` row per run, one ``rows`` row per image × codec × rate.

Each per-image row is committed as soon as it is computed (WAL journal), so a killed
run loses at most the image in flight, and re-running the same command resumes.

Every SQLite error becomes a :class:`~bench.errors.StoreError` that says what to do;
a damaged file (found by :meth:`Store.check`, ``PRAGMA quick_check``, which
:meth:`Store.begin_run` runs before stored rows are trusted and the CLI before every command
that reads the store; or by an unreadable page) is a :class:`~bench.errors.StoreDamagedError`
whose fix is ``bench recover`` (:mod:`bench.storage.recover`). ``Store(path, readonly=True)``
opens with a ``mode=ro`` URI and no set-up, so a store the user cannot write can still be
listed, reported, exported and compared. An open Store holds a shared lock on
``<store>.lock`` (:mod:`bench.storage.lock`), so ``bench recover`` refuses to replace the file
under it.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, TypeVar

from bench.errors import OutputError, StoreDamagedError, StoreError
from bench.storage import lock
from bench.storage.rows import (  # noqa: F401 - Row, pack_states, unpack_states: re-exported
    Row,
    dumps,
    json_object,
    pack_states,
    row_from_columns,
    unpack_states,
)
from bench.storage.store_errors import (  # noqa: F401 - re-exported for the CLI
    not_a_store_error,
    not_sqlite,
    recover_fix,
    store_error,
)

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
    metric_errors TEXT,         -- JSON {metric: error} of metrics that failed on this row (row stays ok)
    PRIMARY KEY (run_id, codec, rate, image_id)
);
"""


_RUN_COLUMNS = ("run_id", "created", "updated", "config", "meta", "status")
_ROW_COLUMNS = ("run_id", "codec", "rate", "image_id", "status", "error", "height", "width", "bytes", "bpp",
                "metrics", "states", "seconds", "created", "notes")  # metric_errors: added by _migrate
# Created by the first Store.put_dataset_values (stores without FID/KID never get it).
DATASET_VALUES_SCHEMA = """
CREATE TABLE IF NOT EXISTS dataset_values (
    run_id     TEXT NOT NULL,
    codec      TEXT NOT NULL,
    rate       TEXT NOT NULL,
    metric     TEXT NOT NULL,
    state_hash TEXT NOT NULL,   -- hash of the metric's identity and the states the values came from
    "values"   TEXT NOT NULL,   -- JSON {key: value}: the metric's compute() of the merged states
    created    REAL NOT NULL,
    PRIMARY KEY (run_id, codec, rate, metric)
);
"""


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """Turn sqlite3 errors raised by a Store method into StoreError."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as err:
            raise store_error(err, self.path) from None

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps the wrapped method's signature


def connect_readonly(path: Path | str) -> sqlite3.Connection:
    """A connection that cannot write: ``mode=ro``; when SQLite cannot create the WAL index
    beside a read-only file in a read-only folder, ``immutable=1`` (nobody can write there)."""
    quoted = urllib.parse.quote(str(Path(path).absolute()))
    db = sqlite3.connect(f"file:{quoted}?mode=ro", uri=True, timeout=60)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError as err:
        if not str(getattr(err, "sqlite_errorname", "")).startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
            raise
    db.close()
    return sqlite3.connect(f"file:{quoted}?mode=ro&immutable=1", uri=True, timeout=60)


class Store:
    """A run store in one SQLite file (default ``results/bench.sqlite``).

    ``readonly``: open without writing anything (no WAL or schema set-up); the file must
    exist. Writing methods then raise StoreError. ``locked``: hold the shared lock of
    :mod:`bench.storage.lock` while open (False only for a private file, e.g. recover's copy).
    """

    def __init__(self, path: Path | str, *, readonly: bool = False, locked: bool = True) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock: int | None = None
        if self.path.is_dir():
            raise StoreError(f"run store {self.path} is a folder", "pass --out DIR, the folder that holds bench.sqlite")
        if readonly and not self.path.exists():
            raise StoreError(f"no run store at {self.path}",
                             "start one with `bench run`, or pass --out DIR of the results folder that has one")
        if not readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise OutputError(f"cannot create the results folder {self.path.parent}: {err.strerror or err}",
                                  "pass --out DIR, a folder you can write") from None
        new_lock = locked and not lock.lock_path(self.path).exists()
        if locked:
            self._lock = lock.hold_shared(self.path, create=not readonly)
        try:
            if readonly:
                self.db = connect_readonly(self.path)
                self._check_schema()
            else:
                self.db = sqlite3.connect(self.path, timeout=60)
                self._check_schema()  # before anything is written to a file that is not ours
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(SCHEMA)
                self._migrate()
            self._has_metric_errors = "metric_errors" in self._row_columns()
        except BaseException as err:  # refused (not a store, damaged, …): leave no lock file of ours behind
            lock.release(self._lock)
            if new_lock:
                lock.lock_path(self.path).unlink(missing_ok=True)
            if isinstance(err, sqlite3.Error):
                raise store_error(err, self.path) from None
            raise

    def _check_schema(self) -> None:
        """Refuse an SQLite file with tables that is not a run store (a foreign database at the
        store path), before anything is written to it."""
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return  # empty: a new store
        missing = [t for t in ("runs", "rows") if t not in tables]
        if not missing:
            runs = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
            missing = [f"runs.{c}" for c in _RUN_COLUMNS if c not in runs]
            rows = self._row_columns()
            missing += [f"rows.{c}" for c in _ROW_COLUMNS if c not in rows]
        if missing:
            self.db.close()
            shown = ", ".join(sorted(tables)[:5]) + (" …" if len(tables) > 5 else "")
            raise not_a_store_error(self.path, f"an SQLite database with other tables ({shown}; no "
                                               f"{', '.join(missing[:3])})")

    def _row_columns(self) -> set[str]:
        return {r[1] for r in self.db.execute("PRAGMA table_info(rows)")}

    def _migrate(self) -> None:
        """Add columns that stores written by older versions lack (their values stay NULL).
        The ``dataset_values`` table (added with stored FID/KID, :data:`DATASET_VALUES_SCHEMA`)
        is created when values are first stored; a store without it has its dataset-level
        values computed when read."""
        if "metric_errors" not in self._row_columns():
            with self.db:
                self.db.execute("ALTER TABLE rows ADD COLUMN metric_errors TEXT")

    def _has_table(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (name,)).fetchone() is not None

    def close(self) -> None:
        self.db.close()
        lock.release(self._lock)
        self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- health ---------------------------------------------------------------------
    def problems(self, limit: int = 5) -> list[str]:
        """``PRAGMA quick_check`` findings (empty when the file is sound). Reads every page:
        linear in the file size (see README, "Damaged store" for the measured cost)."""
        try:
            found = [str(r[0]) for r in self.db.execute(f"PRAGMA quick_check({int(limit)})")]
        except sqlite3.Error as err:
            return [str(err)]
        return [] if found == ["ok"] else found

    def check(self) -> None:
        """Raise :class:`StoreDamagedError` (with how to recover) when the file is damaged."""
        found = self.problems()
        if found:
            raise StoreDamagedError(f"run store {self.path} is damaged: {found[0]}"
                                    + (f" (+{len(found) - 1} more)" if len(found) > 1 else ""),
                                    recover_fix(self.path))

    # -- runs -----------------------------------------------------------------------
    @_guarded
    def begin_run(self, run_id: str, config: dict[str, Any], meta: dict[str, Any]) -> bool:
        """Create the run, or reopen it; returns True when it already existed (resume).

        The file is checked first (``PRAGMA quick_check``): rows stored in a damaged
        file are not trusted as done."""
        self.check()
        now = time.time()
        cur = self.db.execute("SELECT run_id FROM runs WHERE run_id = ?", (run_id,))
        exists = cur.fetchone() is not None
        with self.db:
            if exists:
                self.db.execute(
                    "UPDATE runs SET updated = ?, meta = ?, status = 'running' WHERE run_id = ?",
                    (now, dumps(meta), run_id),
                )
            else:
                self.db.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, 'running')",
                    (run_id, now, now, dumps(config), dumps(meta)),
                )
        return exists

    @_guarded
    def update_meta(self, run_id: str, meta: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET meta = ?, updated = ? WHERE run_id = ?", (dumps(meta), time.time(), run_id))

    @_guarded
    def finish_run(self, run_id: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET status = 'finished', updated = ? WHERE run_id = ?", (time.time(), run_id))

    @_guarded
    def runs(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT run_id, created, updated, config, meta, status FROM runs ORDER BY created")
        try:
            return [
                {"run_id": r[0], "created": r[1], "updated": r[2], "config": json_object(r[3], "config"),
                 "meta": json_object(r[4], "meta"), "status": r[5]}
                for r in cur.fetchall()
            ]
        except (ValueError, TypeError) as err:
            raise StoreDamagedError(f"run store {self.path} is damaged: a run's record does not parse ({err})",
                                    recover_fix(self.path)) from None

    @_guarded
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
    @_guarded
    def done_keys(self, run_id: str, *, include_errors: bool = True) -> set[tuple[str, str, str]]:
        """(codec, rate, image_id) of rows already stored (``include_errors=False``: only
        rows with no error at all, neither the row's nor a metric's)."""
        sql = "SELECT codec, rate, image_id FROM rows WHERE run_id = ?"
        if not include_errors:
            sql += " AND status = 'ok'"
            if self._has_metric_errors:
                sql += " AND (metric_errors IS NULL OR metric_errors IN ('', '{}'))"
        return {tuple(r) for r in self.db.execute(sql, (run_id,))}

    @_guarded
    def put(self, run_id: str, row: Row) -> None:
        """Insert or replace one row and commit it at once."""
        states = pack_states(row.states) if row.states else None
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO rows (run_id, codec, rate, image_id, status, error, height, width, bytes, "
                "bpp, metrics, states, seconds, created, notes, metric_errors) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, row.codec, row.rate, row.image_id, row.status, row.error, row.height, row.width,
                 dumps(row.bytes), row.bpp, dumps(row.metrics), states, dumps(row.seconds), time.time(),
                 dumps(row.notes), dumps(row.metric_errors)),
            )

    def rows(self, run_id: str, states: bool | Collection[str] = True) -> Iterator[Row]:
        """The run's rows, ordered by codec, rate, image; an unreadable one raises
        :class:`StoreDamagedError`. ``states=False``: without their metric states (``{}``;
        unpacking them is most of the time of reading a row); metric names: only theirs."""
        only = None if isinstance(states, bool) else frozenset(states)
        try:
            cur = self.db.execute(
                f"SELECT codec, rate, image_id, status, error, height, width, bytes, bpp, metrics, "
                f"{'states' if states else 'NULL'}, seconds, "
                f"notes, {'metric_errors' if self._has_metric_errors else 'NULL'}, created FROM rows WHERE run_id = ? "
                "ORDER BY codec, rate, image_id",
                (run_id,),
            )
            for r in cur:
                yield row_from_columns(r, only)
        except sqlite3.Error as err:
            raise store_error(err, self.path) from None
        except (ValueError, TypeError, KeyError, OSError) as err:  # a row whose JSON or npz does not parse
            raise StoreDamagedError(f"run store {self.path} is damaged: a row of run {run_id} does not parse "
                                    f"({type(err).__name__}: {err})", recover_fix(self.path)) from None

    # -- dataset-level values (FID, KID: computed once, see bench.analysis.dataset_level) --
    @_guarded
    def dataset_values(self, run_id: str) -> dict[tuple[str, str, str], tuple[str, dict[str, float]]]:
        """(codec, rate, metric) → (state hash, values) stored for the run ({} for a
        read-only store written before the table existed)."""
        if not self._has_table("dataset_values"):
            return {}
        cur = self.db.execute('SELECT codec, rate, metric, state_hash, "values" FROM dataset_values '
                              "WHERE run_id = ?", (run_id,))
        try:
            return {(r[0], r[1], r[2]): (r[3], json.loads(r[4])) for r in cur}
        except (ValueError, TypeError) as err:
            raise StoreDamagedError(f"run store {self.path} is damaged: a dataset value of run {run_id} "
                                    f"does not parse ({err})", recover_fix(self.path)) from None

    @_guarded
    def put_dataset_values(self, run_id: str, items: list[tuple[str, str, str, str, dict[str, float]]]) -> None:
        """Store (codec, rate, metric, state hash, values) entries in one transaction;
        nothing on a read-only store (the values are then recomputed when read)."""
        if self.readonly or not items:
            return
        now = time.time()
        with self.db:
            self.db.execute(DATASET_VALUES_SCHEMA)
            self.db.executemany('INSERT OR REPLACE INTO dataset_values (run_id, codec, rate, metric, state_hash, '
                                '"values", created) VALUES (?,?,?,?,?,?,?)',
                                [(run_id, c, r, m, h, json.dumps(v, allow_nan=True), now)  # key order kept
                                 for c, r, m, h, v in items])

    @_guarded
    def count(self, run_id: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM rows WHERE run_id = ?", (run_id,)).fetchone()[0])
