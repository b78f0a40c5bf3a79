"""Per-process scratch folders for external tools, cleaned even after ``kill -9``.

:func:`scratch_dir` gives this process one folder, ``$TMPDIR/bench-<kind>-pid<PID>``, created at
the first use. Before creating it, every ``bench-<kind>-pid<N>`` folder whose process ``N`` is no
longer alive is removed: whatever a run killed by SIGTERM or ``kill -9`` left behind (its
workers exit through ``os._exit``, which skips clean-up) goes at the start of the next run that
uses the tool. A normal exit removes the folder itself (``atexit``).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path

_MINE: dict[tuple[str, int, str], Path] = {}  # (kind, pid, tmp root) -> folder (a forked worker makes its own)
_PID = re.compile(r"-pid(\d+)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep(kind: str, root: Path | str | None = None) -> list[Path]:
    """Remove the ``bench-<kind>-pid<N>`` folders of dead processes under ``root`` ($TMPDIR);
    returns what was removed."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"bench-{kind}-pid*"):
        match = _PID.search(folder.name)
        if match is None or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed


def scratch_dir(kind: str) -> Path:
    """This process's scratch folder for ``kind`` (e.g. "bpg"), made on first use after
    :func:`sweep` removed those of dead processes."""
    root = tempfile.gettempdir()
    key = (kind, os.getpid(), root)
    folder = _MINE.get(key)
    if folder is not None and folder.is_dir():
        return folder
    sweep(kind, root)
    folder = Path(root) / f"bench-{kind}-pid{os.getpid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    _MINE[key] = folder
    atexit.register(_remove, folder, os.getpid())
    return folder


def _remove(folder: Path, owner: int) -> None:
    if os.getpid() == owner:  # a forked child inherits the handler: only the owner removes it
        shutil.rmtree(folder, ignore_errors=True)
