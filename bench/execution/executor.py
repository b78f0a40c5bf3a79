"""The one interface the runner drives: an :class:`Executor` turns a plan's pending codings into
stored rows. :class:`~bench.execution.local.LocalExecutor` runs them on this machine (worker
processes, batched metric networks), :class:`~bench.execution.ray_executor.RayExecutor` on a Ray
cluster; a user's own (e.g. a job queue) needs only :meth:`Executor.run`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from bench.codecs.base import Codec
    from bench.datasets.base import Dataset
    from bench.metrics.base import Metric
    from bench.storage.store import Row

#: [(image id, [(codec index, rate value), …]), …]: the codings a run still needs.
Todo = Sequence[tuple[str, list[tuple[int, Any]]]]


@runtime_checkable
class Executor(Protocol):
    """Runs codings and measures them; rows come back in order of completion."""

    def run(self, dataset: Dataset, codecs: Sequence[Codec], metrics: Sequence[Metric], todo: Todo,
            semantics: Any = None) -> Iterator[Row]:
        """One row per (image, codec, rate) of ``todo``: bytes, bpp and every metric's value and state."""
        ...


def progress_hook(executor: Executor, tick: Callable[[str, int], None]) -> None:
    """Give ``executor`` the runner's progress callback ``tick(phase, n)`` ("coding" or a metric
    name) when it reports progress (an ``progress`` attribute); others show one bar for rows."""
    if hasattr(executor, "progress"):
        executor.progress = tick  # optional part of the protocol


def threads_meta(executor: Executor) -> dict[str, Any] | None:
    """The processes × threads the executor used (``thread_plan``, bench.runtime.threads) and the
    main process's adapted thread counts (``main_threads_used``), for the run's metadata."""
    plan = getattr(executor, "thread_plan", None)
    meta = plan.as_meta() if plan is not None else None
    used = getattr(executor, "main_threads_used", None)
    if meta is not None and used:
        meta["main_used"] = used
    return meta
