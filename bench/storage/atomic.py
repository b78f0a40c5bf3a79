"""Atomic file output: a report file is either its old content or its complete new content.

Writers put their bytes into a hidden temporary file in the destination folder
(``.<name>.<random>.tmp<suffix>``, keeping the suffix so that matplotlib and pandas pick the
format from it) and rename it over the destination with :func:`os.replace`. An exception
or Ctrl-C removes the temporary file; a ``kill -9`` can leave one hidden ``.tmp`` file, never
an empty or half-written ``<name>``. Failures to write become :class:`~bench.errors.OutputError`.

Only a regular file (or an absent path) is replaced. A symbolic link is followed: the file it
points to is replaced and the link stays. Any other existing target (a FIFO, a device such as
``/dev/stdout`` or ``/dev/null``, a socket) is written *through*: the complete bytes, built in a
temporary file under ``$TMPDIR``, are written into it as ``cat tmp > target`` would; the node
itself is never replaced. A FIFO with no reader, or a target that refuses the bytes
(``/dev/full``), is an OutputError (exit 7).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.errors import OutputError

TMP_MARK = ".tmp"


def output_dir(path: Path | str, what: str = "output folder", fix: str = "choose a folder you can write") -> Path:
    """Create folder ``path`` (and parents) or raise OutputError saying why not (and ``fix``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a folder", "give a folder path (or remove the file)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create {what} {path}: {err.strerror or err}", fix) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path} is not writable", fix)
    return path


def is_special(path: Path | str) -> bool:
    """True when ``path`` (links followed) exists and is neither a regular file nor a folder:
    a FIFO, a device, a socket. Such a target is written through, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _real(path: Path) -> Path:
    """``path`` with symbolic links followed (the file a link points to is what gets replaced)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def output_file(path: Path | str, what: str = "output file") -> Path:
    """Check that ``path`` can be a file (not an existing folder); create its folder (that of the
    file a symbolic link points to). A FIFO or device needs no writable folder (written through)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder, not a file", f"give a file name, e.g. {path / 'rows.csv'}")
    if not is_special(path):
        output_dir(_real(path).parent, f"folder of {what}")
    return path


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit it replaces ``path`` at once.

    ``with atomic_path(out / "rd_psnr.png") as tmp: fig.savefig(tmp)``
    """
    path = output_file(path)
    if is_special(path):
        with _through(path) as tmp:
            yield tmp
        return
    path = _real(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=TMP_MARK + path.suffix, dir=path.parent)
    except OSError as err:
        from bench.runtime.limits import os_error_fix

        raise OutputError(f"cannot write in {path.parent}: {err.strerror or err}",
                          os_error_fix(err, "choose a folder you can write")) from None
    tmp = Path(name)
    try:  # from the first statement after mkstemp: a signal (Ctrl-C, a dying parent) removes it
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is as readable as any new file
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        from bench.runtime.limits import os_error_fix

        raise OutputError(f"cannot write {path}: {err.strerror or err}", os_error_fix(err)) from None
    except BaseException:  # an error or Ctrl-C while writing: the old file stays as it was
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _through(path: Path) -> Iterator[Path]:
    """Yield a temporary path under $TMPDIR; on normal exit its bytes are written into the
    existing FIFO or device ``path`` (opened without blocking: a FIFO with no reader is refused)."""
    fd, name = tempfile.mkstemp(prefix=f"bench-{path.stem}.", suffix=TMP_MARK + path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        try:
            out = os.open(path, os.O_WRONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as err:
            if err.errno == errno.ENXIO:
                raise OutputError(f"cannot write {path}: it is a FIFO with no reader",
                                  "start the reader first (e.g. `cat FIFO`), or give a file name") from None
            raise
        try:
            os.set_blocking(out, True)
            with open(tmp, "rb") as src:
                while chunk := src.read(1 << 20):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view):]
        finally:
            os.close(out)
    except OSError as err:
        raise OutputError(f"cannot write {path} (not a regular file, written through): {err.strerror or err}",
                          "give a regular file name, or check the device or FIFO") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_with(path: Path | str, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` (e.g. ``df.to_csv``, ``fig.savefig``) and move the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def remove_stale(path: Path | str) -> bool:
    """Remove an output that no longer applies (e.g. failures.csv once every row is ok)."""
    try:
        Path(path).unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as err:
        raise OutputError(f"cannot remove the outdated {path}: {err.strerror or err}",
                          "remove it yourself or fix the folder's permissions") from None
