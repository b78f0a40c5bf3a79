"""Processes that never outlive bench.

* :func:`run_tool` runs an external tool (argument list, no shell) in its own process group
  and, on a timeout, an error or Ctrl-C, kills the whole group: a wrapper script's
  children die with it.
* :func:`die_with_parent` makes a worker process exit when the process that started it
  dies (also by ``kill -9``): ``prctl(PR_SET_PDEATHSIG)`` on Linux, and everywhere a
  watchdog thread that polls the parent pid (every ``WATCHDOG_S`` seconds). Tool process
  groups the worker started are killed first.
* :func:`worker_context` is the multiprocessing context for codec pools (fork where it is safe,
  see :func:`start_method`; else spawn): its workers start with SIGINT ignored, so Ctrl-C
  reaches only the run's process (which stops the pool) instead of printing a traceback from
  every worker.
"""

from __future__ import annotations

import ctypes
import functools
import multiprocessing.context
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from bench.modes import StartMethod

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


def _tool_dies_with(parent: int):
    """A ``preexec_fn`` (Linux): the tool gets SIGKILL when ``parent`` dies, even by kill -9 of a
    run coding in its main process (workers also kill their tools' groups, see die_with_parent)."""
    prctl = _libc_prctl()
    if prctl is None:
        return None

    def arm() -> None:  # in the child, between fork and exec: no imports, no locks
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def run_tool(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``args`` with captured output in a new process group; raises
    :class:`subprocess.TimeoutExpired` after ``timeout`` seconds, once the whole group is dead.
    The tool dies with this process (Linux: PR_SET_PDEATHSIG)."""
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_tool_dies_with(os.getpid()))
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


@functools.cache
def _libc_prctl():
    """libc's ``prctl`` on Linux (the C library already loaded into this process), else None;
    looked up once."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _set_pdeathsig(sig: int) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies; False elsewhere."""
    prctl = _libc_prctl()
    return prctl is not None and prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0


def die_with_parent(parent_pid: int, on_term: Callable[..., Any] | None = None) -> None:
    """Exit this process (killing its tools) as soon as ``parent_pid`` is no longer its parent.

    ``on_term``: this process's SIGTERM handler instead of exiting at once (e.g. one raising
    SystemExit, so that ``finally`` blocks remove temporary files); the watchdog then sends
    SIGTERM to this process, and exits it itself only if it is still alive 5 s later."""
    if threading.current_thread() is threading.main_thread():
        # PDEATHSIG, or the pool terminating a broken worker
        signal.signal(signal.SIGTERM, on_term or _exit_now)
    _set_pdeathsig(signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        _exit_now()

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(WATCHDOG_S)
        if on_term is not None:  # the main thread unwinds (the handler runs there)
            os.kill(os.getpid(), signal.SIGTERM)
            threading.Event().wait(5.0)
        _exit_now()

    threading.Thread(target=watch, name="bench-parent-watchdog", daemon=True).start()


class _IgnoresSigint:
    """A worker process that starts with SIGINT ignored (the disposition survives fork and exec)."""

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return super().start()  # type: ignore[misc]  # mixin: super() is multiprocessing's Process.start in the concrete worker class
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            super().start()  # type: ignore[misc]  # mixin: super() is multiprocessing's Process.start in the concrete worker class
        finally:
            signal.signal(signal.SIGINT, previous)


class _SpawnWorker(_IgnoresSigint, multiprocessing.context.SpawnProcess):
    pass


class _ForkWorker(_IgnoresSigint, multiprocessing.context.ForkProcess):
    pass


class _SpawnContext(multiprocessing.context.SpawnContext):
    Process = _SpawnWorker


class _ForkContext(multiprocessing.context.ForkContext):
    Process = _ForkWorker


START_METHODS: tuple[StartMethod, ...] = ("fork", "spawn")


def start_method() -> StartMethod:
    """How codec workers start: "fork" where it is safe, else "spawn"; ``BENCH_START_METHOD``
    (fork or spawn) overrides it (another value: :class:`~bench.errors.ConfigError`).

    A forked worker shares the modules this process has imported, so it starts in ~10 ms; a
    spawned one imports them again (torch: 1–2 s per worker, on the cores the run needs). Fork is
    safe on Linux while CUDA is not initialised here (a forked child cannot use it); the workers
    run single-threaded (bench.runtime.threads), so torch's OpenMP pool is not entered after the fork.
    macOS and Windows spawn."""
    chosen = os.environ.get("BENCH_START_METHOD", "").strip().lower()
    for method in START_METHODS:
        if chosen == method:
            return method
    if chosen:
        from bench.errors import ConfigError

        raise ConfigError(f"BENCH_START_METHOD={chosen!r} is not a start method",
                          f"set it to {' or '.join(START_METHODS)}, or unset it (fork where safe)")
    if not sys.platform.startswith("linux"):
        return "spawn"
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "cuda", None) is not None and torch.cuda.is_initialized():
        return "spawn"
    return "fork"


def worker_context(method: str | None = None) -> multiprocessing.context.BaseContext:
    """The context for codec pools (``method``: see :func:`start_method`): its workers ignore
    Ctrl-C (the run's process stops the pool) instead of printing a traceback each."""
    return _ForkContext() if (method or start_method()) == "fork" else _SpawnContext()
