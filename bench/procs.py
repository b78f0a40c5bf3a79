"""Processes that never outlive bench.

* :func:`run_tool` runs an external tool (argument list, no shell) in its own process group
  and, on a timeout, an error or Ctrl-C, kills the whole group: a wrapper script's
  children die with it.
* :func:`die_with_parent` makes a worker process exit when the process that started it
  dies (also by ``kill -9``): ``prctl(PR_SET_PDEATHSIG)`` on Linux, and everywhere a
  watchdog thread that polls the parent pid (every ``WATCHDOG_S`` seconds). Tool process
  groups the worker started are killed first.
* :func:`worker_context` is the multiprocessing "spawn" context for codec pools: its workers
  start with SIGINT ignored, so Ctrl-C reaches only the run's process (which stops the pool)
  instead of printing a traceback from every worker.
"""

from __future__ import annotations

import ctypes
import multiprocessing.context
import os
import signal
import subprocess
import sys
import threading
from typing import Sequence

WATCHDOG_S = 0.5          # how often a worker checks that its parent is alive
PR_SET_PDEATHSIG = 1      # linux/prctl.h

_groups: set[int] = set()  # process groups of running tools (their leaders' pids)


def kill_group(pgid: int) -> None:
    """SIGKILL every process of group ``pgid`` (gone already: nothing to do)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tools() -> None:
    """Kill the process groups of every tool still running in this process."""
    for pgid in list(_groups):
        kill_group(pgid)


def run_tool(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``args`` with captured output in a new process group; raises
    :class:`subprocess.TimeoutExpired` after ``timeout`` seconds, once the whole group is dead."""
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _groups.add(proc.pid)
    with proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:  # timeout, Ctrl-C, …: nothing of the tool stays behind
            kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            kill_group(proc.pid)  # a child the tool left running in its group
            _groups.discard(proc.pid)
    return subprocess.CompletedProcess(list(args), proc.returncode, out, err)


def _exit_now(*_: object) -> None:
    kill_tools()
    os._exit(1)


def _set_pdeathsig(sig: int) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library already loaded into this process
        return libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int) -> None:
    """Exit this process (killing its tools) as soon as ``parent_pid`` is no longer its parent."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_now)  # PDEATHSIG, or the pool terminating a broken worker
    _set_pdeathsig(signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        _exit_now()

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(WATCHDOG_S)
        _exit_now()

    threading.Thread(target=watch, name="bench-parent-watchdog", daemon=True).start()


class _WorkerProcess(multiprocessing.context.SpawnProcess):
    """A spawned process that starts with SIGINT ignored (the disposition survives exec)."""

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return super().start()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            super().start()
        finally:
            signal.signal(signal.SIGINT, previous)


class _WorkerContext(multiprocessing.context.SpawnContext):
    Process = _WorkerProcess  # type: ignore[assignment]


def worker_context() -> multiprocessing.context.SpawnContext:
    """The "spawn" context whose processes ignore Ctrl-C (see the module docstring)."""
    return _WorkerContext()
