"""Atomic file output: a report file is either its old content or its complete new content.

Writers put their bytes into a hidden temporary file in the destination folder
(``.<name>.<random>.tmp<suffix>``, keeping the suffix so that matplotlib and pandas pick the
format from it) and rename it over the destination with :func:`os.replace`. An exception
or Ctrl-C removes the temporary file; a ``kill -9`` can leave one hidden ``.tmp`` file, never
an empty or half-written ``<name>``. Failures to write become :class:`~bench.errors.OutputError`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

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


def output_file(path: Path | str, what: str = "output file") -> Path:
    """Check that ``path`` can be a file (not an existing folder); create its folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder, not a file", f"give a file name, e.g. {path / 'rows.csv'}")
    output_dir(path.parent, f"folder of {what}")
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
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=TMP_MARK + path.suffix, dir=path.parent)
    except OSError as err:
        from bench.runtime.limits import os_error_fix

        raise OutputError(f"cannot write in {path.parent}: {err.strerror or err}",
                          os_error_fix(err, "choose a folder you can write")) from None
    os.close(fd)
    tmp = Path(name)
    try:
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
