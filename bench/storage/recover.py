"""Copy every readable run and row of a damaged run store into a fresh one (``bench recover``).

Works with Python's own ``sqlite3`` (no ``sqlite3`` command-line tool needed): each table
is read in rowid order; when a page cannot be read, the scan jumps over it (the first
readable rowid after the damage is found by an exponential then binary search), so every
row on an intact page is kept. A row whose JSON or metric-state blob does not parse is
counted as lost. The content-addressed result cache is not copied (it only saves time).

Re-running the original ``bench run`` command afterwards recomputes exactly the lost rows
(the run id does not depend on the store).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import OutputError, StoreError
from bench.storage import lock
from bench.storage.store import Store, connect_readonly, unpack_states

RUN_COLUMNS = "run_id, created, updated, config, meta, status"
ROW_COLUMNS = ("run_id, codec, rate, image_id, status, error, height, width, bytes, bpp, metrics, states, "
               "seconds, created, notes, metric_errors")
_ADDED_ROW_COLUMNS = ("metric_errors",)  # added by Store._migrate: absent from older stores (read as NULL)
_MAX_ROWID = 2**63 - 1


@dataclass
class Recovered:
    """What :func:`recover` copied: runs and rows kept, rows (and runs) lost."""

    source: Path
    dest: Path
    runs: int = 0
    rows: int = 0
    lost_runs: int = 0
    lost_rows: int = 0   # unparsable rows, plus rows on unreadable pages when their count is known
    unreadable_ranges: int = 0  # rowid ranges skipped because their pages could not be read

    def summary(self) -> str:
        lost = f"{self.lost_runs} runs and {self.lost_rows} rows unparsable" if self.lost_runs or self.lost_rows \
            else "no unparsable record"
        return (f"recovered {self.runs} runs and {self.rows} rows into {self.dest} "
                f"({lost}; {self.unreadable_ranges} unreadable page ranges skipped; "
                f"the result cache is not copied, it only saves time)")


def _first_after(db: sqlite3.Connection, table: str, after: int) -> int | None:
    """The smallest rowid > ``after`` (None: none); raises sqlite3.Error on a damaged page."""
    row = db.execute(f"SELECT rowid FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 1", (after,)).fetchone()
    return None if row is None else int(row[0])


def _skip_damage(db: sqlite3.Connection, table: str, last: int) -> int | None:
    """After a read error past rowid ``last``: the first readable start (a rowid bound from which
    reading works again), or None when nothing after the damage can be read."""
    step, bad = 1, last
    while True:  # exponential: find a bound from which the query works
        probe = min(last + step, _MAX_ROWID)
        try:
            found = _first_after(db, table, probe)
            good = probe
            break
        except sqlite3.DatabaseError:
            bad = probe
            if probe >= _MAX_ROWID:
                return None
            step *= 2
    if found is None and good == bad + 1:
        return None
    while good - bad > 1:  # binary: the smallest working bound (keeps rows just after the damage)
        mid = (good + bad) // 2
        try:
            _first_after(db, table, mid)
            good = mid
        except sqlite3.DatabaseError:
            bad = mid
    return good


def scan(db: sqlite3.Connection, table: str, columns: str, on_skip: Callable[[], None]) -> Iterator[tuple[Any, ...]]:
    """Every readable record of ``table`` (rowid order), jumping over unreadable pages."""
    after = -_MAX_ROWID - 1
    while True:
        try:
            cur = db.execute(f"SELECT rowid, {columns} FROM {table} WHERE rowid > ? ORDER BY rowid", (after,))
            for rec in cur:
                after = int(rec[0])
                yield rec[1:]
            return
        except sqlite3.DatabaseError:
            on_skip()
            nxt = _skip_damage(db, table, after)
            if nxt is None:
                return
            after = nxt


def _source_columns(db: sqlite3.Connection, table: str, columns: str) -> str:
    """``columns`` as a SELECT list for ``table`` of the source: a column that an older store
    lacks (one of ``_ADDED_ROW_COLUMNS``) is read as NULL."""
    try:
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError:
        return columns
    names = [c.strip() for c in columns.split(",")]
    return ", ".join("NULL" if c in _ADDED_ROW_COLUMNS and have and c not in have else c for c in names)


def _valid_run(rec: tuple[Any, ...]) -> bool:
    try:
        return isinstance(rec[0], str) and isinstance(json.loads(rec[3]), dict) and isinstance(json.loads(rec[4]), dict)
    except (TypeError, ValueError):
        return False


def _valid_row(rec: tuple[Any, ...]) -> bool:
    try:
        if not all(isinstance(v, str) for v in rec[:5]):
            return False
        for i in (8, 10, 12, 14, 15):
            if rec[i] is not None:
                json.loads(rec[i])
        if rec[11] is not None:
            unpack_states(rec[11])
        return True
    except (TypeError, ValueError, KeyError, OSError):
        return False


def recover(source: Path | str, dest: Path | str) -> Recovered:
    """Copy the readable runs and rows of the store ``source`` into a new store ``dest``
    (which must not exist). ``source`` is only read."""
    source, dest = Path(source), Path(dest)
    if not source.is_file():
        raise StoreError(f"no run store at {source}", "pass --out DIR, the folder that holds bench.sqlite")
    if dest.exists():
        raise OutputError(f"{dest} already exists", "move it away or choose another --dest")
    result = Recovered(source, dest)

    def skipped() -> None:
        result.unreadable_ranges += 1

    try:
        src = connect_readonly(source)
    except sqlite3.Error as err:
        raise StoreError(f"cannot read {source} at all ({err})",
                         "nothing can be recovered from it: move it away and re-run to recompute") from None
    try:
        with Store(dest, locked=False) as out:
            for table, columns, valid, kind in (("runs", RUN_COLUMNS, _valid_run, "runs"),
                                                ("rows", ROW_COLUMNS, _valid_row, "rows")):
                marks = ",".join("?" * len(columns.split(",")))
                try:
                    records = list(scan(src, table, _source_columns(src, table, columns), skipped))
                except sqlite3.DatabaseError:  # the table's root page itself is unreadable
                    skipped()
                    records = []
                good = [r for r in records if valid(r)]
                with out.db:
                    out.db.executemany(f"INSERT OR REPLACE INTO {table} ({columns}) VALUES ({marks})", good)
                setattr(result, kind, len(good))
                setattr(result, f"lost_{kind}", len(records) - len(good))
    finally:
        src.close()
    return result


def _kept_name(store_path: Path) -> Path:
    """``<name>.damaged-<time>``, with ``-2``, ``-3``… when that is taken (two recovers in one
    second never keep their files under one name)."""
    stem = f"{store_path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    kept, n = store_path.with_name(stem), 1
    while any(Path(f"{kept}{s}").exists() for s in ("", "-wal", "-shm")):
        n += 1
        kept = store_path.with_name(f"{stem}-{n}")
    return kept


def recover_in_place(store_path: Path | str) -> tuple[Recovered, Path]:
    """Recover ``store_path`` into a fresh file that takes its place; the damaged file (and its
    ``-wal``/``-shm``) is renamed ``<name>.damaged-<time>`` (a unique name). Refused
    (StoreError, exit 4) while another process has the store open (:mod:`bench.storage.lock`),
    e.g. a run still writing it, or another recover. Returns the summary and that name."""
    store_path = Path(store_path)
    with lock.exclusive(store_path, "replace it with a recovered copy"):
        return _recover_in_place(store_path)


def _recover_in_place(store_path: Path) -> tuple[Recovered, Path]:
    fresh = store_path.with_name(f".{store_path.name}.recovering-{os.getpid()}")
    for leftover in (fresh, Path(f"{fresh}-wal"), Path(f"{fresh}-shm")):
        leftover.unlink(missing_ok=True)
    result = recover(store_path, fresh)
    kept = _kept_name(store_path)
    try:
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{store_path}{suffix}").exists():
                os.replace(f"{store_path}{suffix}", f"{kept}{suffix}")
        os.replace(fresh, store_path)
    except OSError as err:
        raise OutputError(f"cannot put the recovered store in place of {store_path}: {err.strerror or err}",
                          f"the recovered copy is {fresh}: move it to {store_path} yourself") from None
    result.dest = store_path
    return result, kept
