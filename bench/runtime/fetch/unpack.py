"""Unpack a verified dataset archive into the layout its card reads, member by member.

Every member is written to ``<name>.part`` and renamed into place after its size (and, for zip
files, its CRC-32, which :mod:`zipfile` checks while reading) matched; a manifest
``.bench-manifest-<archive>.json`` in the entry's folder lists each unpacked file and its size,
so ``bench fetch --list`` can tell a complete dataset from a damaged one without the archive.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from bench.errors import OutputError
from bench.runtime.fetch.download import FetchError
from bench.runtime.fetch.registry import FileSpec


def manifest_path(folder: Path, spec: FileSpec) -> Path:
    return folder / f".bench-manifest-{spec.file}.json"


def _members(archive: Path) -> Iterator[tuple[str, int, Callable[[], IO[bytes] | None]]]:
    """(posix name, size, opener) of every regular file in a zip or tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, info.file_size, functools.partial(zf.open, info)
        return
    try:
        with tarfile.open(archive) as tf:
            for member in tf:
                if member.isfile():
                    yield member.name, member.size, functools.partial(tf.extractfile, member)
    except tarfile.TarError as err:
        raise FetchError(f"{archive.name} is not a zip or tar archive ({err})",
                         "the download is damaged: fetch it again") from None


def _safe(name: str) -> PurePosixPath | None:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        return None
    return p


def unpack(archive: Path, spec: FileSpec, folder: Path) -> int:
    """Unpack ``archive`` into ``folder / spec.unpack["into"]`` (only members below the
    ``members`` prefixes); returns the number of files. Raises :class:`FetchError` on a damaged
    member, :class:`OutputError` on a full disk (no partial file keeps a final name)."""
    opts = spec.unpack or {}
    into = (folder / opts.get("into", ".")).resolve()
    prefixes = tuple(opts.get("members") or ())
    files: dict[str, int] = {}
    for name, size, opener in _members(archive):
        rel = _safe(name)
        if rel is None or (prefixes and not name.startswith(prefixes)):
            continue
        dest = into / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        try:
            src = opener()
            if src is None:
                continue
            with src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
            part.unlink(missing_ok=True)
            raise FetchError(f"{archive.name}: member {name} is damaged ({err})",
                             "the archive is corrupt: fetch it again") from None
        except OSError as err:
            part.unlink(missing_ok=True)
            if err.errno == errno.ENOSPC:
                raise OutputError(f"cannot unpack {archive.name} into {into}: disk full",
                                  "free disk space (or set $BENCH_DATA_DIR to a larger disk) and fetch again") from None
            raise
        if part.stat().st_size != size:
            part.unlink()
            raise FetchError(f"{archive.name}: member {name} unpacked to {part.stat().st_size} bytes, expected {size}",
                             "the archive is corrupt: fetch it again")
        os.replace(part, dest)
        files[str(dest.relative_to(folder.resolve()))] = size
    if not files:
        raise FetchError(f"{archive.name} holds no file below {', '.join(prefixes) or '/'}",
                         "the archive is not the published one: fetch it again")
    from bench.storage.atomic import write_text

    write_text(manifest_path(folder, spec), json.dumps({"archive": spec.file, "files": files}, indent=0))
    return len(files)


def unpacked_status(folder: Path, spec: FileSpec) -> str:
    """``present`` (every listed file there with its size), ``damaged`` or ``missing``."""
    try:
        files = json.loads(manifest_path(folder, spec).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return "missing"
    for rel, size in files.items():
        p = folder / rel
        if not p.is_file() or p.stat().st_size != size:
            return "damaged"
    return "present"
