"""Saving figures: each file drawn once per content, several at once where that is safe.

A :class:`FigureJob` names an output stem, the formats to save, a builder and a content key
(:func:`content_key`: everything that decides the pixels — data, options, the drawing code and
matplotlib's version). :func:`render` skips a job whose files exist and whose key is the one
recorded in the folder's ``.figures.json``; it draws the others, in forked processes (at most one
per free core) when there are several, on Linux, where forking is safe (:func:`_can_fork`) — else here.
A job that fails in a child is drawn again here, so its error (or warning) is raised as in a
serial call. The index is written after the files, so a killed render only redraws.

Saving dominates a report's time (a PDF's Type 42 font subsetting: ~0.2 s per font and file).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from bench.storage.atomic import write_text, write_with

from .figstyle import STYLE, write_caption

INDEX = ".figures.json"


@dataclass(frozen=True)
class FigureJob:
    """One figure: ``build()`` returns it (``fig.caption_lines`` set), saved as ``stem`` + each
    format's suffix with its ``savefig`` options, plus ``<stem>.caption.txt`` headed by ``title(fig)``."""

    stem: Path
    key: str
    build: Callable[[], Figure]
    title: Callable[[Figure], str]
    formats: tuple[tuple[str, dict[str, Any]], ...]

    def paths(self) -> list[Path]:
        return [self.stem.with_suffix(suffix) for suffix, _ in self.formats]


@lru_cache(maxsize=1)
def _code_hash() -> str:
    """The drawing code's own hash: an edited module redraws (an installed release never changes)."""
    from bench.runtime.hashing import source_hash

    h = hashlib.sha256(matplotlib.__version__.encode())
    h.update(source_hash(Path(__file__).parent).encode())
    h.update(json.dumps(STYLE, sort_keys=True, default=str).encode())
    return h.hexdigest()


def content_key(*parts: Any) -> str:
    """sha256 of ``parts`` (DataFrames by their CSV text and ``attrs``, the rest as JSON text)."""
    h = hashlib.sha256(_code_hash().encode())
    for part in parts:
        if isinstance(part, pd.DataFrame):
            h.update(part.to_csv().encode())
            part = part.attrs
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _read_index(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _current(job: FigureJob, index: dict[str, str]) -> bool:
    caption = job.stem.with_name(job.stem.name + ".caption.txt")
    return index.get(job.stem.name) == job.key and all(p.exists() for p in [*job.paths(), caption])


def saved_copy(job: FigureJob, folder: Path | str, suffix: str) -> Path | None:
    """``folder``'s ``suffix`` file of the same figure (its index holds ``job``'s key for the
    stem's name, its files exist), e.g. a curve ``bench report`` saved: None if there is none."""
    stem = Path(folder) / job.stem.name
    path = stem.with_suffix(suffix)
    return path if _read_index(Path(folder)).get(stem.name) == job.key and path.is_file() else None


def _draw(job: FigureJob) -> list[Path]:
    fig = job.build()
    paths = []
    with matplotlib.rc_context(STYLE):
        for suffix, kwargs in job.formats:
            def save(tmp: Path, kw: dict[str, Any] = kwargs) -> None:
                fig.savefig(tmp, **kw)

            paths.append(write_with(job.stem.with_suffix(suffix), save))
            fig.set_layout_engine("none")  # laid out by the first save: the others keep its positions
    write_caption(job.stem, fig.caption_lines, job.title(fig))
    return paths


_JOBS: list[FigureJob] = []  # what forked children draw (they inherit it)


_BUSY: list[bool] = [False]  # a child is drawing (else it waits for a job, with nothing to clean up)


def _child(i: int) -> tuple[list[Path], list[tuple[type[Warning], str]]]:
    _BUSY[0] = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            paths = _draw(_JOBS[i])
    except (SystemExit, KeyboardInterrupt):  # the parent died (_unwind) or Ctrl-C: the temporary file
        os._exit(1)  # is removed by now; take no next job
    finally:
        _BUSY[0] = False
    return paths, [(w.category, str(w.message)) for w in caught]


def _child_init(parent: int) -> None:
    import signal

    from bench.runtime.procs import die_with_parent

    die_with_parent(parent, on_term=_unwind)  # the parent died: unwind, removing temporary files
    signal.signal(signal.SIGINT, _interrupted)


def _interrupted(*_: object) -> None:
    """Ctrl-C in a child: unwind a drawing (its temporary file is removed); between jobs, leave
    at once — without multiprocessing's traceback of a worker interrupted while it waits."""
    if _BUSY[0]:
        raise KeyboardInterrupt
    os._exit(1)


def _unwind(*_: object) -> None:
    raise SystemExit(1)


def free_cores() -> int:
    """Cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _can_fork() -> bool:
    """Linux, forking allowed (:func:`bench.runtime.procs.start_method`: no CUDA here, no
    ``BENCH_START_METHOD=spawn``), a process that may have children, and no other thread but
    daemons (tqdm's monitor, a pool's handlers) that the children do not need."""
    from bench.runtime.procs import start_method

    if not sys.platform.startswith("linux") or multiprocessing.current_process().daemon:
        return False
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    return all(t.daemon for t in others) and start_method() == "fork"


class Pending:
    """Figures being saved (:func:`start`); :meth:`wait` finishes them and returns their paths."""

    def __init__(self, jobs: list[FigureJob], workers: int | None) -> None:
        self.jobs = jobs
        self._indexes: dict[Path, dict[str, str]] = {}
        for job in jobs:
            self._indexes.setdefault(job.stem.parent, _read_index(job.stem.parent))
        self._todo = [j for j in jobs if not _current(j, self._indexes[j.stem.parent])]
        n = min(len(self._todo), workers or free_cores())
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future] = []
        if n > 1 and _can_fork():
            global _JOBS
            _JOBS = self._todo
            try:
                self._pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"),
                                                 initializer=_child_init, initargs=(os.getpid(),))
                self._futures = [self._pool.submit(_child, i) for i in range(len(self._todo))]
            finally:
                _JOBS = []  # the children have their copy

    def wait(self) -> list[Path]:
        """Draw what the children did not (raising its error here), record the keys; all paths."""
        done: set[int] = set()
        if self._pool is not None:
            try:
                for i, future in enumerate(self._futures):
                    try:
                        _, caught = future.result()
                    except Exception:  # noqa: BLE001 - drawn again below, where its error is raised as it is
                        continue
                    done.add(i)
                    for category, message in caught:
                        warnings.warn(message, category, stacklevel=2)
            finally:  # on Ctrl-C the drawings not begun are dropped, not waited for
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
        for i, job in enumerate(self._todo):
            if i not in done:
                _draw(job)
        for folder, index in self._indexes.items():
            drawn = {j.stem.name: j.key for j in self._todo if j.stem.parent == folder}
            if drawn:
                write_text(folder / INDEX, json.dumps({**index, **drawn}, indent=0, sort_keys=True) + "\n")
        return [p for job in self.jobs for p in job.paths()]


def start(jobs: Iterable[FigureJob], workers: int | None = None) -> Pending:
    """Begin saving every job's files (skipping those saved from the same content) in forked
    children when there are several and forking is safe; ``workers``: processes drawing at once
    (default: the free cores; 1 draws in :meth:`Pending.wait`, here)."""
    return Pending(list(jobs), workers)


def render(jobs: Iterable[FigureJob], workers: int | None = None) -> list[Path]:
    """:func:`start` and wait: the paths of all jobs, in order."""
    return start(jobs, workers).wait()
