"""A run's summary table stored beside its rows, read back while the rows are those it came from.

Summarising reads every row and unpacks its metric states (~1.6 ms a row: a 650-row run takes
a second before anything is drawn). ``bench run`` stores the summary when it ends and every
reader (``report``, ``figures``, ``compare``, the HTML) takes it from the ``summaries`` table
while its key matches: a hash of the run record, of the rows' keys and write times (every row
write stamps ``created``) and of the summarising code. A store opened read-only is written
through a second, short-lived connection when the file is writable (:func:`write_through`, as
stored FID/KID values are);
otherwise, or on any error, the summary is simply computed again next time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import StoreError
from bench.storage.store import Row, Store

log = logging.getLogger("bench")

SCHEMA = """
CREATE TABLE IF NOT EXISTS summaries (
    run_id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    frame TEXT NOT NULL,
    created REAL NOT NULL
)"""
_CODE = ("report", "analysis", "metrics")  # bench packages whose code decides a summary


@lru_cache(maxsize=1)
def _code_hash() -> str:
    from bench import __version__
    from bench.runtime.hashing import source_hash

    root = Path(__file__).resolve().parent.parent
    return hashlib.sha256((__version__ + source_hash(*(root / p for p in _CODE))).encode()).hexdigest()


def summary_key(run: dict[str, Any], rows: Sequence[Row]) -> str | None:
    """The key of the summary of ``run`` with ``rows`` (all of its rows as stored; None when a
    row has no write time, i.e. was not read from a store)."""
    stamps = [r.created for r in rows]
    if any(t is None for t in stamps):
        return None
    text = json.dumps([_code_hash(), run, [(r.codec, r.rate, r.image_id) for r in rows], stamps],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _encode(df: pd.DataFrame) -> str:
    data = [[v.item() if isinstance(v, np.generic) else v for v in row] for row in df.itertuples(index=False)]
    return json.dumps({"columns": list(df.columns), "dtypes": [str(t) for t in df.dtypes], "data": data,
                       "attrs": df.attrs}, allow_nan=True, default=str)


def _decode(text: str) -> pd.DataFrame:
    obj = json.loads(text)
    df = pd.DataFrame(obj["data"], columns=obj["columns"])
    df = df.astype(dict(zip(obj["columns"], obj["dtypes"]))) if len(df) else df
    df.attrs = obj["attrs"]
    return df


def read_summary(store: Store, run_id: str, key: str | None) -> pd.DataFrame | None:
    """The stored summary of ``run_id`` if stored under ``key``, else None."""
    if key is None:
        return None
    try:
        hit = store.db.execute("SELECT frame FROM summaries WHERE run_id = ? AND key = ?", (run_id, key)).fetchone()
        return _decode(hit[0]) if hit else None
    except sqlite3.Error:  # no table yet (a store written before summaries were stored)
        return None
    except (ValueError, TypeError, KeyError) as err:
        log.warning("stored summary of %s unreadable (%s); computing it", run_id, err)
        return None


def write_through(store: Store, write: Callable[[Store], None]) -> bool:
    """Call ``write`` with ``store``, or, when it was opened read-only (``report``, ``figures``,
    ``compare`` open it so), with a short-lived writable connection to the same file when the
    file and its folder are writable; False when neither (errors are the caller's)."""
    if not store.readonly:
        write(store)
        return True
    if os.access(store.path, os.W_OK) and os.access(store.path.parent, os.W_OK):
        with Store(store.path) as writable:
            write(writable)
        return True
    return False


def write_summary(store: Store, run_id: str, key: str | None, df: pd.DataFrame) -> bool:
    """Store ``df`` as ``run_id``'s summary under ``key``; False when it could not be stored."""
    if key is None:
        return False
    row = (run_id, key, _encode(df))
    try:
        return write_through(store, lambda s: _put(s.db, row))
    except (StoreError, sqlite3.Error, OSError) as err:
        log.info("summary of %s not stored (%s); it is computed again next time", run_id, err)
        return False


def _put(db: sqlite3.Connection, row: tuple[str, str, str]) -> None:
    with db:
        db.execute(SCHEMA)
        db.execute("INSERT OR REPLACE INTO summaries (run_id, key, frame, created) VALUES (?,?,?,strftime('%s'))", row)
