"""Codings that cannot stall or sink a run: a per-coding timeout, and codec workers that are
replaced when one dies.

* **Timeout.** Each coding (encode + decode of one image at one rate) gets
  :func:`coding_timeout` seconds: ``--timeout`` / ``timeout=`` of the run, else the codec card's
  ``timeout:``, else :data:`DEFAULT_TIMEOUT_S`. In a worker process the clock starts when the
  coding is handed to a worker (at most one coding waits in the pool's call queue ahead of it);
  past the limit every worker of the pool is killed (a stuck or stopped worker cannot be told
  apart from the others; their tools die with them), the coding is recorded as a failed row and
  the other codings in flight are retried. In the main process (codecs that are not
  ``parallel_safe``, e.g. a Python-API codec or a network on the GPU) the coding runs in a
  daemon thread that the run *abandons* past the limit: Python cannot interrupt a thread, and a
  subprocess would need a picklable codec and a second copy of its weights. An abandoned thread
  may keep its CPU (or GPU) busy until its call returns and dies with the process; the codec
  object is then used by the next coding while the old call may still run.
* **A worker dies** (kill -9, SIGTERM, out of memory, a crash in C code). The pool is replaced
  for the codings still to submit, and every coding the broken pool lost is retried *alone* in a
  one-worker pool, so a second death is that coding's own: it is recorded as a failed row
  (``WorkerDiedError``); all others finish. When even a no-op cannot run in a fresh worker (the
  pool cannot start at all), codings fall back to the main process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from bench.errors import BenchError, ConfigError

DEFAULT_TIMEOUT_S = 600.0  # seconds per coding when neither the run nor the codec's card says
_POLL_S = 0.2


class CodingTimeoutError(BenchError):
    """A coding took longer than its timeout (recorded as a failed row)."""


class WorkerDiedError(BenchError):
    """The worker process died twice while coding one image (recorded as a failed row)."""


class PoolUnusable(Exception):
    """A fresh worker cannot even run a no-op: code in the main process instead."""


def check_timeout(value: Any, what: str = "--timeout") -> float | None:
    """Seconds per coding from ``value``: a finite number > 0; 0 or None: no limit.
    NaN, infinities, negatives and text that is no number are a ConfigError."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {value!r} is not a number of seconds", f"e.g. {what} 300 (0: no limit)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{what} {value!r} must be a finite number of seconds >= 0",
                          f"e.g. {what} 300 (0: no limit)")
    return seconds or None


def coding_timeout(codec: Any, override: float | None = None) -> float | None:
    """The seconds one coding of ``codec`` may take (None: no limit): the run's ``override``
    (0: no limit), else the card's ``timeout:`` (null or 0: no limit), else DEFAULT_TIMEOUT_S."""
    if override is not None:
        return check_timeout(override)
    card = getattr(codec, "card", None) or {}
    if "timeout" in card:
        return check_timeout(card["timeout"], f"'timeout' of the {getattr(codec, 'name', '?')} card")
    return DEFAULT_TIMEOUT_S


def _timed_out(seconds: float, where: str) -> CodingTimeoutError:
    return CodingTimeoutError(f"coding took longer than the timeout of {seconds:g} s ({where})",
                              "raise it with --timeout SECONDS (or 'timeout:' in the codec's card), or use "
                              "smaller images")


def call_with_timeout(fn: Callable[[], Any], seconds: float | None) -> Any:
    """``fn()`` in this thread when ``seconds`` is None; else in a daemon thread, abandoned
    (CodingTimeoutError) when it has not returned after ``seconds``. Its exception is re-raised."""
    if seconds is None:
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 (handed to the caller)
            box["error"] = err

    thread = threading.Thread(target=target, name="bench-coding", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise _timed_out(seconds, "in the main process; the call was abandoned")
    if "error" in box:
        raise box["error"]
    return box["value"]


class CodingPool:
    """The run's codec worker processes (see the module doc): started at the first submit,
    replaced when broken, with a one-worker pool for retries."""

    def __init__(self, workers: int, context: Any, initializer: Callable[..., None],
                 initargs: Callable[[], tuple[Any, ...]]) -> None:
        self.workers = workers
        self._context, self._initializer, self._initargs = context, initializer, initargs
        self._args: tuple[Any, ...] | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._solo: ProcessPoolExecutor | None = None
        self.restarts = 0  # pools replaced after a worker died or was killed

    def _new(self, n: int) -> ProcessPoolExecutor:
        if self._args is None:
            self._args = self._initargs()
        return ProcessPoolExecutor(n, mp_context=self._context, initializer=self._initializer, initargs=self._args)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Submit to the pool, starting a fresh one when it is broken."""
        for _ in range(2):
            if self._pool is None:
                self._pool = self._new(self.workers)
            try:
                future = self._pool.submit(fn, *args)
                future.bench_pool = self._pool  # type: ignore[attr-defined]  # which pool to blame
                return future
            except BrokenProcessPool:
                self._drop("_pool")
        raise PoolUnusable("the codec worker pool breaks at once")

    def result(self, future: Future, call: tuple[Any, ...], timeout: float | None) -> Any:
        """The result of ``future`` (``call`` = (fn, *args) that made it). A lost coding is retried
        alone; raises CodingTimeoutError, WorkerDiedError, or PoolUnusable."""
        owner = getattr(future, "bench_pool", None)
        try:
            return _wait(future, timeout)
        except FutureTimeout:
            _kill_workers(owner)  # the stuck worker cannot be singled out: the others' codings are retried
            if owner is self._pool:
                self._drop("_pool")
            raise _timed_out(timeout or 0, "in a worker process, which was killed") from None
        except (BrokenProcessPool, CancelledError):  # lost with a dead (or killed) worker's pool
            if owner is self._pool:  # not a fresh pool started since
                self._drop("_pool")  # the next submit starts a fresh pool
        return self._alone(call, timeout)

    def _alone(self, call: tuple[Any, ...], timeout: float | None) -> Any:
        if self._solo is None:
            self._solo = self._new(1)
        try:
            return _wait(self._solo.submit(*call), timeout)
        except FutureTimeout:
            self._kill("_solo")
            raise _timed_out(timeout or 0, "in a worker process, which was killed") from None
        except (BrokenProcessPool, CancelledError):
            self._drop("_solo")
        if not self._can_start():
            raise PoolUnusable("a fresh codec worker cannot start")
        raise WorkerDiedError("the codec worker process died twice while coding this image (killed, out of "
                              "memory, or a crash in the codec)",
                              "look for a crash of the codec on this image; the other images were coded")

    def _can_start(self) -> bool:
        probe = self._new(1)
        try:
            probe.submit(int).result(timeout=120)
            return True
        except Exception:  # noqa: BLE001 (any failure: the pool cannot run)
            return False
        finally:
            probe.shutdown(wait=False, cancel_futures=True)

    def _drop(self, attr: str) -> None:
        pool = getattr(self, attr)
        setattr(self, attr, None)
        if pool is not None:
            self.restarts += attr == "_pool"
            # shutdown() forgets the workers: keep them, to kill one found stuck later
            pool.bench_procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)

    def _kill(self, attr: str) -> None:
        _kill_workers(getattr(self, attr))
        self._drop(attr)

    def shutdown(self) -> None:
        for attr in ("_solo", "_pool"):
            pool = getattr(self, attr)
            setattr(self, attr, None)
            if pool is not None:
                pool.shutdown(cancel_futures=True)


def _kill_workers(pool: ProcessPoolExecutor | None) -> None:
    """SIGKILL every worker of ``pool`` (ProcessPoolExecutor keeps them in ``_processes``)."""
    procs = list((getattr(pool, "_processes", None) or {}).values()) + list(getattr(pool, "bench_procs", []))
    for proc in procs:
        try:
            proc.kill()
        except (OSError, ValueError, AttributeError):
            pass


def _wait(future: Future, timeout: float | None) -> Any:
    """``future.result()``; FutureTimeout once it has run ``timeout`` s (counted from when the
    pool hands it to a worker: ``future.running()``)."""
    if timeout is None:
        return future.result()
    started: float | None = None
    while True:
        now = time.monotonic()
        if started is None and (future.running() or future.done()):
            started = now
        left = _POLL_S if started is None else started + timeout - now
        try:
            return future.result(timeout=max(left, 0.0))
        except FutureTimeout:
            if started is not None and time.monotonic() >= started + timeout:
                raise
