"""Trackers that write from a background process, so that logging costs the evaluation nothing.

MLflow's first use costs seconds (importing it: 3–9 s; creating a local sqlite store runs its
schema migrations: 10–18 s on a busy 2-core machine), TensorBoard's figures need matplotlib and
wandb starts a service. A tracker named by text (``--log mlflow``, ``log="wandb"``) is therefore
opened and written by one child process per tracker (:class:`Deferred`): it starts when the
tracker is opened — before the evaluation, so its start overlaps the work — and receives, per
logged run, only the store path, run id, step and the reconstruction crops; it reads the run
back from the store itself, builds the scalars, figures and params and writes them, in order.
``close()`` waits for every write and raises the child's error, if any, as the typed error it
was. The child dies with its parent (``bench.runtime.procs.die_with_parent``).

On a machine with few cores the child and the evaluation compete for CPU, so the child keeps out
of the evaluation's way: it does its slow set-up (imports, a new MLflow store, wandb's service,
matplotlib's first figure: :meth:`Tracker.prepare`) at once, before the first run arrives, at
normal priority (every write waits for it; niced, MLflow's seconds of set-up would run only in
the evaluation's idle moments and then alone after it), then writes at a lower priority
(``os.nice(NICE)``: the writes fill the cores' idle moments instead of taking a share of busy
ones), and recomputes the reconstruction crops itself when the run's codecs and dataset are
registered names it can rebuild (``Job.config``), so the evaluating process never codes them
(and keeps them from step to step: see :func:`~bench.integrations.tracking.reconstruction_crops`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError, UnavailableError
from bench.integrations.tracking import Payload, Tracker

NICE = 10  # the child's niceness: well below the evaluation, not starved by other programs at close()
PACKAGES = {"tensorboard": ("tensorboard", "torch.utils.tensorboard"), "mlflow": ("mlflow",), "wandb": ("wandb",)}


@dataclass
class Job:
    """One stored run to log: the child reads everything else from the store."""

    store: str
    run_id: str
    step: int
    images: dict[str, np.ndarray] = field(default_factory=dict)
    config: Any = None  # a RunConfig of registered names: the child recomputes ``crops`` crops per codec
    crops: int = 0


def check_installed(kind: str) -> None:
    """Raise :class:`UnavailableError` (with the pip line) unless ``kind``'s package can be imported."""
    from bench.integrations.tracking import missing_package

    for module in PACKAGES.get(kind, ()):
        if module in sys.modules:
            if sys.modules[module] is None:
                raise missing_package(PACKAGES[kind][0])
            continue
        try:
            found = importlib.util.find_spec(module.split(".")[0]) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise missing_package(PACKAGES[kind][0])


def lower_priority(nice: int | None = None) -> int:
    """Raise this process's niceness to ``nice`` (default :data:`NICE`; ``BENCH_TRACKER_NICE``
    overrides it, 0 keeps it); returns the niceness now (unchanged where the OS has no nice)."""
    if nice is None:
        try:
            nice = int(os.environ.get("BENCH_TRACKER_NICE", NICE))
        except ValueError:
            nice = NICE
    try:
        now = os.nice(0)
        return os.nice(max(0, nice - now)) if nice > now else now
    except (AttributeError, OSError):
        return 0


def rebuildable(config: Any) -> bool:
    """True when ``config``'s dataset and codecs are registered names whose codecs may run in
    another process (``parallel_safe``): a tracker's process can recompute the crops itself."""
    from bench.errors import BenchError
    from bench.registry import catalog

    if config is None or not isinstance(config.dataset, str):
        return False
    try:
        return all(isinstance(c, str) and getattr(catalog.codec_class(c), "parallel_safe", False)
                   for c in config.codecs)
    except (BenchError, LookupError, ImportError):
        return False


def _serve(spec: str, results_dir: str, jobs: Any, errors: Any, parent: int) -> None:
    """The child: open the tracker, write each job's payload, close; report the first error."""
    from bench.runtime.procs import die_with_parent

    die_with_parent(parent)
    tracker = None
    try:
        from bench.integrations.tracker_kinds import make_tracker
        from bench.integrations.tracking import payload, reconstruction_crops
        from bench.storage.store import Store

        tracker = make_tracker(spec, results_dir)
        tracker.prepare()
        lower_priority()  # set-up at full speed (every write waits for it), the writes in idle moments
        crops: dict[Any, np.ndarray] = {}  # registered codecs' crops, the same at every step
        while (job := jobs.get()) is not None:
            store = Store(Path(job.store), readonly=True)
            try:
                data = payload(store, job.run_id, job.step, crops=0)
                data.images = job.images if job.config is None or job.crops <= 0 else \
                    reconstruction_crops(job.config, store, job.run_id, per_codec=job.crops, cache=crops)
            finally:
                store.close()
            tracker.write(data)
    except BaseException as err:  # noqa: BLE001 - sent to the parent, raised by close()
        fix = err.fix if isinstance(err, BenchError) else "see the message"
        errors.put((type(err).__name__, str(err), fix, isinstance(err, BenchError)))
        while jobs.get() is not None:  # drain: the parent's close() must not block on a full pipe
            pass
    finally:
        if tracker is not None:
            try:
                tracker.close()
            except Exception as err:  # noqa: BLE001
                errors.put((type(err).__name__, str(err), "see the message", False))


class Deferred(Tracker):
    """A tracker (``spec`` as for :func:`~bench.integrations.trackers.open_tracker`) run in a
    child process; :meth:`send` queues a stored run, :meth:`close` waits for all of them."""

    def __init__(self, spec: str, results_dir: str | Path) -> None:
        from bench.runtime.procs import worker_context

        self.spec = spec
        self.kind = spec.partition(":")[0].strip().lower()
        check_installed(self.kind)
        ctx = worker_context()
        self._jobs = ctx.Queue()
        self._errors = ctx.Queue()
        process = ctx.Process  # type: ignore[attr-defined]  # a multiprocessing context has Process at run time; typeshed's BaseContext does not say so
        self._proc = process(target=_serve, name=f"bench-{self.kind}", daemon=True,
                             args=(spec, str(results_dir), self._jobs, self._errors, os.getpid()))
        self._proc.start()
        self._closed = False

    def send(self, job: Job) -> None:
        """Queue one stored run (returns at once)."""
        self._jobs.put(job)

    def write(self, data: Payload) -> None:  # a Deferred tracker is fed jobs (log_run does so)
        raise TypeError("Deferred trackers take send(Job(...)); use bench.integrations.trackers.log_run")

    def close(self) -> None:
        """Wait until every queued run is written and the tracker is closed; raise its error."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        self._proc.join()
        self._jobs.close()
        error = None if self._errors.empty() else self._errors.get()
        if error is None and self._proc.exitcode:
            error = ("Exit", f"the {self.kind} writer process ended with code {self._proc.exitcode}",
                     "see its output above", False)
        if error is not None:
            name, message, fix, typed = error
            raise UnavailableError(f"--log {self.spec}: {message}" if not typed else message,
                                   fix if typed else f"{name}: {fix}")
