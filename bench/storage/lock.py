"""Who has a run store open: an advisory lock file beside it, ``<store>.lock``.

Every :class:`~bench.storage.store.Store` holds a *shared* ``flock`` on ``bench.sqlite.lock``
while it is open (a read-only store where the lock file exists or can be made; a store in a
folder nobody can write has no writer to fear). A command that replaces the store file
(``bench recover``) takes the *exclusive* lock, without waiting: while any other process has
the store open it refuses with a :class:`~bench.errors.StoreError` (exit 4) instead of moving
the file away under a live writer, which would keep writing into the renamed copy. Two
recovers at once: the second is refused the same way. A store opened while a recover holds
the lock waits for it (up to ``WAIT_S``), then uses the recovered file.

The lock file is never moved or removed (so both sides always lock the same inode); the
kernel drops a lock when its process dies, also by ``kill -9``. Platforms without ``fcntl``
(Windows) get no lock.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from bench.errors import StoreError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]  # no fcntl (Windows): no lock

WAIT_S = 60.0  # how long opening a store waits for a recover to finish


def lock_path(store: Path | str) -> Path:
    store = Path(store)
    return store.with_name(f"{store.name}.lock")


def _open(store: Path, create: bool) -> int | None:
    flags = (os.O_RDWR | os.O_CREAT) if create else os.O_RDONLY
    try:
        return os.open(lock_path(store), flags | os.O_CLOEXEC, 0o666)
    except OSError:
        if create:  # a folder we may read but not write
            return _open(store, False)
        return None


def hold_shared(store: Path | str, *, create: bool = True) -> int | None:
    """Take the shared lock of ``store`` (waiting up to WAIT_S for a recover); returns the
    descriptor to close when the store is closed, or None when no lock can be had here."""
    if fcntl is None:
        return None
    fd = _open(Path(store), create)
    if fd is None:
        return None
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise StoreError(f"run store {store} is being replaced by another process (bench recover)",
                                 "wait for `bench recover` to finish, then re-run") from None
            time.sleep(0.1)
        except OSError:  # a file system without flock
            os.close(fd)
            return None


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor drops its lock


@contextlib.contextmanager
def exclusive(store: Path | str, doing: str = "replace it") -> Iterator[None]:
    """Hold the exclusive lock of ``store`` for the block; StoreError (exit 4) at once when
    another process has the store open."""
    if fcntl is None:
        yield
        return
    fd = _open(Path(store), True)
    if fd is None:
        raise StoreError(f"cannot create the lock file {lock_path(store)}",
                         "check the permissions of the store's folder")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"run store {store} is open in another process (a bench run, report or recover): "
                             f"refusing to {doing} under it",
                             "wait for that command to finish (or stop it), then run this again") from None
        yield
    finally:
        os.close(fd)
