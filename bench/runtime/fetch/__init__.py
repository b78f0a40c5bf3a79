"""``bench fetch``'s engine: verified, resumable downloads of the registry's weights and datasets.

Files land under :func:`data_dir` (``$BENCH_DATA_DIR``, default a user cache folder):
weights in ``weights/`` (searched by every weights lookup), datasets in
``datasets/<name>/`` in the layout their cards read. ``$BENCH_MIRROR`` (``--mirror``) replaces
every download URL by ``<mirror>/<registry file name>``; ``$BENCH_OFFLINE=1`` (``--offline``)
refuses any request.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench.runtime.fetch.download import (
    FetchError,
    OfflineError,
    fetch_file,
    is_verified,
)
from bench.runtime.fetch.registry import (
    Entry,
    FileSpec,
    data_dir,
    entries,
    fetch_command,
    for_file,
    mirror,
    offline,
    select,
)
from bench.runtime.fetch.unpack import unpack, unpacked_status

__all__ = ["Entry", "FetchError", "FileSpec", "OfflineError", "data_dir", "dataset_dir", "entries",
           "fetch", "fetch_command", "fetch_entry", "fetch_weight", "import_from", "mirror", "offline",
           "select", "status", "weights_dir"]


def weights_dir() -> Path:
    """Where fetched weights live (searched by :mod:`bench.runtime.weights`)."""
    return data_dir() / "weights"


def dataset_dir(name: str) -> Path | None:
    """The fetched dataset folder of ``name`` when the registry has one and it exists."""
    from bench.runtime.fetch.registry import by_name

    entry = by_name().get(name) if name else None
    if entry is None or entry.kind != "dataset":
        return None
    folder = entry.folder()
    return folder if folder.is_dir() else None


def _archive_path(spec: FileSpec) -> Path:
    return data_dir() / "downloads" / spec.file


def file_status(entry: Entry, spec: FileSpec) -> str:
    """``present``, ``damaged`` or ``missing`` for one file of an entry."""
    if spec.unpack:
        return unpacked_status(entry.folder(), spec)
    dest = entry.folder() / spec.file
    if not dest.is_file():
        return "missing"
    return "present" if is_verified(spec, dest) else "damaged"


def status(entry: Entry) -> str:
    """``present``, ``damaged``, ``missing`` or ``partial k/n`` for an entry."""
    states = [file_status(entry, f) for f in entry.files]
    if "damaged" in states:
        return "damaged"
    n = states.count("present")
    if n == len(states):
        return "present"
    return "missing" if n == 0 else f"partial {n}/{len(states)}"


def fetch_entry(entry: Entry, *, progress: bool = True, from_dir: Path | None = None) -> list[Path]:
    """Fetch (or import from ``from_dir``) every file of ``entry`` that is not already present
    and verified; archives are unpacked and removed. Returns the entry's final paths."""
    out: list[Path] = []
    for spec in entry.files:
        copy = _find_in(from_dir, spec.file) if from_dir is not None else None
        if from_dir is not None and copy is None:
            raise FetchError(f"{spec.file} ({entry.name}) is not in {from_dir} (searched recursively)",
                             f"copy {spec.file} into {from_dir}, or fetch it from the network")
        if spec.unpack:
            if file_status(entry, spec) == "present":
                out.append(entry.folder())
                continue
            archive = fetch_file(entry, spec, _archive_path(spec), progress=progress, copy_from=copy)
            unpack(archive, spec, entry.folder())
            archive.unlink()
            out.append(entry.folder())
        else:
            out.append(fetch_file(entry, spec, entry.folder() / spec.file, progress=progress, copy_from=copy))
    return out


def _find_in(folder: Path, name: str) -> Path | None:
    if not folder.is_dir():
        raise FetchError(f"--from {folder}: not a folder", "give the folder the files were copied into")
    direct = folder / name
    if direct.is_file():
        return direct
    return next(iter(sorted(p for p in folder.rglob(name) if p.is_file())), None)


def fetch(names: list[str], *, progress: bool = True, from_dir: Path | None = None) -> list[Path]:
    """``bench fetch NAME…`` as a function: entry, group, ``weights``, ``datasets`` or ``all``."""
    out: list[Path] = []
    for entry in select(names):
        out += fetch_entry(entry, progress=progress, from_dir=from_dir)
    return out


def import_from(folder: Path, names: list[str] | None = None) -> list[tuple[str, str]]:
    """``bench fetch --from DIR``: import every registry file found below ``folder`` (or those of
    ``names``), hash-checked. Returns (entry name, "imported" | error text) per entry tried."""
    report: list[tuple[str, str]] = []
    for entry in select(names) if names else entries():
        if not all(_find_in(folder, f.file) for f in entry.files):
            if names:
                fetch_entry(entry, from_dir=folder)  # raises naming the missing file
            continue
        try:
            fetch_entry(entry, from_dir=folder, progress=False)
            report.append((entry.name, "imported"))
        except FetchError as err:
            report.append((entry.name, f"refused ({err.problem})"))
    return report


def fetch_weight(filename: str, *, progress: bool = True) -> Path | None:
    """Auto-fetch for weights lookups: the verified file of the registry entry holding
    ``filename``, downloaded when missing; None when the registry has no such file. Raises
    :class:`OfflineError` in offline mode, :class:`FetchError` when the download fails."""
    found = for_file(filename)
    if found is None or found[0].kind != "weights" or found[1].unpack:
        return None
    entry, spec = found
    return _once(filename, lambda: fetch_file(entry, spec, entry.folder() / spec.file, progress=progress))


T = TypeVar("T")

#: Downloads that failed in this process, by file name: not tried again by the next metric.
_FAILED: dict[str, FetchError] = {}


def forget_failures() -> None:
    """Try failed downloads again (a long-lived process whose mirror or network changed; tests)."""
    _FAILED.clear()


def _once(key: str, download: Callable[[], T]) -> T:
    """``download()``, unless it already failed in this process under ``key`` (fid and kid share
    the Inception file): then its error again, without a second request."""
    if key in _FAILED:
        raise _FAILED[key]
    try:
        return download()
    except FetchError as err:
        _FAILED[key] = err
        raise


def auto_fetch_enabled() -> bool:
    """Whether weights lookups may download (not offline, and not disabled by ``$BENCH_AUTO_FETCH=0``)."""
    return not offline() and os.environ.get("BENCH_AUTO_FETCH", "1").strip().lower() not in ("0", "false", "no", "off")


def fetch_missing(missing: list) -> bool:
    """Download the registry files that unmet weights requirements name (``bench run`` asked for
    their metric or codec); True when something was fetched. Nothing happens offline. Raises
    :class:`FetchError` (an :class:`~bench.errors.UnavailableError`) when a download fails."""
    from bench.runtime.fetch.registry import by_name, names_in

    if not auto_fetch_enabled():
        return False
    table = by_name()
    names = list(dict.fromkeys(n for r in missing if r.kind == "weights" for n in names_in(f"{r.name} {r.detail}")))
    for name in names:
        if table[name].kind == "weights":
            _once(name, lambda: fetch_entry(table[name]))  # noqa: B023 (called at once)
    return bool(names)
