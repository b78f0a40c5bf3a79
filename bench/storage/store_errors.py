"""The store's errors, each with its fix: SQLite's error codes and messages mapped to
:class:`~bench.errors.StoreError` (locked, read-only, full, unopenable) or
:class:`~bench.errors.StoreDamagedError` (fix: ``bench recover``)."""

from __future__ import annotations

from pathlib import Path

from bench.errors import StoreDamagedError, StoreError


def recover_fix(path: Path | str) -> str:
    """How to get the intact rows of a damaged store back (the fix of a StoreDamagedError)."""
    out = Path(path).parent
    return (f"run `bench --out {out} recover` to copy every readable row into a fresh store "
            f"(the damaged file is kept beside it), then re-run your command: lost rows are recomputed")


_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_DAMAGED_TEXT = ("malformed", "not a database", "disk image", "corrupt")


SQLITE_MAGIC = b"SQLite format 3\x00"


def not_sqlite(path: Path | str) -> bool:
    """True when ``path`` is a non-empty file that does not start with SQLite's header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError:
        return False
    return bool(head) and head != SQLITE_MAGIC


def not_a_store_error(path: Path | str, what: str) -> StoreError:
    """The error for a file at the store path that is no bench run store (nothing to recover)."""
    return StoreError(f"{path} is {what}, not a bench run store; nothing was written to it",
                      f"pass --out DIR for a folder of its own, or move the file away (mv {path} {path}.bak) "
                      "and re-run: a fresh store is made")


def _limit_note() -> str:
    """' (ulimit -f is N blocks)' when a file size limit is set (a full-disk error may be that)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return ""
    return "" if soft == resource.RLIM_INFINITY else f" or raise the file size limit (ulimit -f is {soft // 1024} KiB)"


def store_error(err: BaseException, path: Path | str) -> StoreError:
    """The StoreError (with a fix) for a sqlite3 error on the store at ``path``."""
    name = str(getattr(err, "sqlite_errorname", "") or "")
    text = str(err)
    if (name.startswith("SQLITE_NOTADB") or "not a database" in text) and not_sqlite(path):
        return not_a_store_error(path, "not an SQLite file")
    if name.startswith(_DAMAGED) or any(t in text.lower() for t in _DAMAGED_TEXT):
        return StoreDamagedError(f"run store {path} is damaged ({text})", recover_fix(path))
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return StoreError(f"run store {path} is locked by another process ({text})",
                          "wait for the other bench command to finish, or pass --out DIR for a separate store")
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return StoreError(f"run store {path} is read-only ({text})",
                          "`runs`, `report --dest DIR`, `export` and `compare` work on it; to run, make it "
                          "writable or pass --out DIR for a new store")
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return StoreError(f"run store {path}: disk full ({text})",
                          f"free disk space{_limit_note()}, then re-run to resume")
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        from bench.runtime.limits import fd_limit_note

        return StoreError(f"cannot open run store {path} ({text})",
                          f"check that the folder exists and is readable{fd_limit_note()}, or pass --out DIR")
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in text:
        from bench.runtime.limits import fd_limit_note

        return StoreError(f"run store {path}: {type(err).__name__}: {text}",
                          f"check free disk space and the file and folder permissions{_limit_note()}"
                          f"{fd_limit_note()}, or pass --out DIR for a separate store")
    return StoreError(f"run store {path}: {type(err).__name__}: {text}",
                      "check the file and folder permissions, or pass --out DIR for a separate store")
