"""The local executor: streams images through code → measure on this machine, parallel-safe
codecs in worker processes (:mod:`bench.execution.guard` replaces dead ones and enforces the
per-coding timeout), metric networks batched in this process."""


from __future__ import annotations

import os
import pickle
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from typing import Any

from bench.codecs.base import Codec
from bench.datasets.base import Dataset, Sample
from bench.execution.guard import CodingPool, PoolUnusable, coding_timeout
from bench.execution.pipeline import (
    Coded,
    _describe_error,
    _nan_keys,
    base_row,
    code,
    code_within,
    fill_cached,
    measure,
)
from bench.execution.resultcache import CodedEntry, ResultCache, coded_key, identity, metric_key, sample_key
from bench.metrics.base import Metric, Pair
from bench.runtime.threads import (
    MainThreads,
    ThreadPlan,
    has_networks,
    heavy_on_cpu,
    is_network,
    limit_process_threads,
    plan_threads,
    set_torch_threads,
)
from bench.storage.store import Row

AUTO_POOL_MIN = 24  # parallel-safe codings from which workers=None starts a process pool

# -- worker processes ---------------------------------------------------------------------
_WORKER_CODECS: list[Codec] = []
_WORKER_METRICS: list[Metric] = []  # pixel metrics measured where the reconstruction is decoded


def _init_worker(threads: int, payload: bytes, parent_pid: int) -> None:
    """Set up a codec worker; it exits (killing its tools) when the run's process dies, even by kill -9."""
    from bench.runtime.procs import die_with_parent

    die_with_parent(parent_pid)
    # thread pools limited before the codecs and metrics are unpickled (which may import torch)
    limit_process_threads(threads)
    _WORKER_CODECS[:], _WORKER_METRICS[:] = pickle.loads(payload)


def _code_in_worker(index: int, rate: Any, sample: Sample, class_set: str | None) -> Coded:
    codec = _WORKER_CODECS[index]
    coded = code(codec, rate, sample, class_set)
    if coded.recon is not None:
        pair = Pair(sample, coded.recon, sum(coded.bytes.values()), codec.name, codec.rate_label(rate))
        for metric in _WORKER_METRICS:
            try:
                state = metric.init()
                t0 = time.perf_counter()
                values = metric.update(state, pair)
                seconds = time.perf_counter() - t0
            except Exception:  # measured again in the main process, which records the error
                continue
            if not _nan_keys(values):
                coded.measured[metric.name] = (values, state, seconds)
    return coded


@dataclass
class _Work:
    """One codec × rate of an image in flight: its cache keys and its coding (or a future of it)."""

    codec_index: int
    rate: Any
    keys: dict[str, str]           # metric name -> metric cache key
    result: Future | Coded
    coded_key: str = ""
    from_cache: bool = False       # the reconstruction came from the cache: nothing to store again


@dataclass
class _Job:
    sample: Sample | None
    rows: list[Row]                      # finished rows (cache hits, load failures)
    work: list[_Work] = field(default_factory=list)
    class_set: str | None = None


class LocalExecutor:
    """Streams images through code → measure on this machine.

    ``workers`` > 1 runs parallel-safe codecs in a process pool (None: one per core when at least
    ``AUTO_POOL_MIN`` codings can run there); ``batch_size`` is the metric batch; ``cache`` reuses
    results by content; ``timeout``: seconds per coding for every codec (None: each codec's,
    see :mod:`bench.execution.guard`, which also replaces dead workers).
    """

    def __init__(self, *, workers: int | None = None, batch_size: int = 8, cache: ResultCache | None = None,
                 lookahead: int = 1, timeout: float | None = None) -> None:
        self.semantics: Any = None
        self.workers = workers  # None: one per core when there is enough work to repay the start-up
        self.batch_size = batch_size
        self.cache = cache
        self.lookahead = lookahead
        self.thread_plan: ThreadPlan | None = None  # chosen by run(), see bench.runtime.threads
        self._inflight: deque[_Job] = deque()
        self.timeout = timeout
        self._timeouts: list[float | None] = []  # per codec index, set by run()
        self._pool: CodingPool | None = None  # its workers start at the first submit
        self._main_threads = MainThreads(ThreadPlan(1, main=1, workers=0))  # set by run()
        self.progress: Any = None  # progress(phase, n): "coding" or a metric name (bench.execution.progress)

    def run(self, dataset: Dataset, codecs: Sequence[Codec], metrics: Sequence[Metric],
            todo: Sequence[tuple[str, list[tuple[int, Any]]]], semantics: Any = None) -> Iterator[Row]:
        """Rows for ``todo`` = [(image_id, [(codec index, rate), …]), …], in order of completion.

        ``semantics``: where semantic codecs' senders get label maps (None: ground truth)."""
        self.semantics = semantics
        class_set = dataset.class_set.name if dataset.class_set else None
        codec_ids = [identity(c) for c in codecs]
        metric_ids = [identity(m) for m in metrics]
        n_parallel = sum(1 for _, pending in todo for ci, _r in pending if codecs[ci].parallel_safe)
        plan = plan_threads(self.workers, n_parallel=n_parallel, heavy=heavy_on_cpu(metrics),
                            networks=has_networks(metrics), auto_pool_min=AUTO_POOL_MIN)
        if plan.workers:
            from bench.runtime.procs import start_method

            plan = replace(plan, start=start_method())
        self.thread_plan = plan
        self._main_threads = MainThreads(plan)  # fewer while other programs keep cores busy
        pixel = [m for m in metrics if not is_network(m)] if plan.pixel_metrics_in_workers else []
        self._timeouts = [coding_timeout(c, self.timeout) for c in codecs]
        self._pool = None
        if plan.workers:
            from bench.runtime.procs import worker_context  # workers ignore Ctrl-C and die with this process

            spec = (list(codecs), pixel)  # pickled when the pool starts
            self._pool = CodingPool(plan.workers, worker_context(plan.start), _init_worker,
                                    lambda: (plan.worker_threads, pickle.dumps(spec), os.getpid()))
        inflight = self._inflight = deque()
        old_threads = set_torch_threads(plan.main)
        try:
            for image_id, pending in todo:
                inflight.append(self._start(dataset, codecs, codec_ids, metrics, metric_ids, class_set,
                                            image_id, pending))
                while len(inflight) > self.lookahead:
                    yield from self._finish(inflight.popleft(), codecs, metrics)
            while inflight:
                yield from self._finish(inflight.popleft(), codecs, metrics)
        finally:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = None
            set_torch_threads(old_threads)

    @property
    def main_threads_used(self) -> dict[str, int]:
        """Measuring phases per torch thread count of the main process in the last run, when
        that count adapted to other programs' load (see bench.runtime.threads.MainThreads); else {}."""
        return self._main_threads.as_meta()

    def _code_here(self, ci: int, codec: Codec, rate: Any, sample: Sample, class_set: str | None) -> Coded:
        """One coding in this process, abandoned after the codec's timeout (a failed row)."""
        return code_within(codec, rate, sample, class_set, self.semantics,
                           self._timeouts[ci] if self._timeouts else None)

    def _start(self, dataset: Dataset, codecs: Sequence[Codec], codec_ids: list[str], metrics: Sequence[Metric],
               metric_ids: list[str], class_set: str | None, image_id: str,
               pending: list[tuple[int, Any]]) -> _Job:
        try:
            sample = dataset.get(image_id)
        except Exception as err:  # unreadable image: one error row per pending codec × rate
            message = f"cannot load image: {type(err).__name__}: {err}"
            return _Job(None, [Row(codecs[ci].name, codecs[ci].rate_label(r), image_id, status="error", error=message)
                               for ci, r in pending])
        job = _Job(sample, [], class_set=class_set)
        skey = sample_key(sample) if self.cache is not None else ""
        inline: list[_Work] = []  # coded in this process, after the pool's share is submitted
        for ci, rate in pending:
            codec = codecs[ci]
            own_semantics = codec.needs_semantics and self.semantics is not None
            cid = codec_ids[ci] + (f"|semantics={self.semantics.identity}" if own_semantics else "")
            ckey = coded_key(skey, cid, codec.rate_label(rate))
            keys = {m.name: metric_key(ckey, mid) for m, mid in zip(metrics, metric_ids)}
            if self.cache is not None:
                entry = self.cache.get_coded(ckey)
                if entry is not None:
                    row = base_row(codec, rate, sample, Coded(entry.bytes, entry.notes, entry.seconds))
                    if not fill_cached(row, metrics, keys, self.cache):
                        job.rows.append(row)
                        continue
                    if entry.has_recon:  # kept by an earlier run: new metrics need no re-encode
                        entry = self.cache.get_coded(ckey, need_recon=True)
                        if entry is not None:
                            job.work.append(_Work(ci, rate, keys, Coded(entry.bytes, entry.notes, entry.seconds,
                                                                         entry.recon), ckey, from_cache=True))
                            continue
            pool = self._pool if codec.parallel_safe and not own_semantics else None
            future = None
            if pool is not None:
                try:
                    future = pool.submit(_code_in_worker, ci, rate, sample, class_set)
                except PoolUnusable:
                    future = None
            if future is not None:
                job.work.append(_Work(ci, rate, keys, future, ckey))
            else:
                inline.append(_Work(ci, rate, keys, Coded(), ckey))
                job.work.append(inline[-1])
        if inline:
            self._quiesce(job)
        for work in inline:
            work.result = self._code_here(work.codec_index, codecs[work.codec_index], work.rate, sample, class_set)
        return job

    def _quiesce(self, *jobs: _Job) -> None:
        """In phased mode (see bench.runtime.threads), wait until no worker codes: the main process then
        computes on every core without oversubscribing them."""
        if self.thread_plan is None or self.thread_plan.mode != "phased":
            return
        limits = [t for t in self._timeouts if t is not None]  # a stuck worker is dealt with in _finish
        wait([w.result for job in (*self._inflight, *jobs) for w in job.work if isinstance(w.result, Future)],
             timeout=max(limits) if limits and len(limits) == len(self._timeouts) else None)

    def _tick(self, phase: str, n: int = 1) -> None:
        if self.progress is not None and n:
            self.progress(phase, n)

    def _finish(self, job: _Job, codecs: Sequence[Codec], metrics: Sequence[Metric]) -> Iterator[Row]:
        self._tick("coding", len(job.rows))
        yield from job.rows
        if job.sample is None or not job.work:
            return
        rows, recons, keys = [], [], []
        for work in job.work:
            codec = codecs[work.codec_index]
            if isinstance(work.result, Future) and self._pool is not None:
                call = (_code_in_worker, work.codec_index, work.rate, job.sample, job.class_set)
                try:  # a dead worker's coding is retried alone (bench.execution.guard)
                    coded = self._pool.result(work.result, call, self._timeouts[work.codec_index])
                except PoolUnusable:  # no worker can start: code it here instead
                    coded = self._code_here(work.codec_index, codec, work.rate, job.sample, job.class_set)
                except Exception as err:  # a timeout, a second death, an unpicklable result: recorded
                    coded = Coded(error=_describe_error(err))
            else:
                coded = work.result
            self._tick("coding")
            row = base_row(codec, work.rate, job.sample, coded)
            if coded.error is not None:
                yield row
                continue
            if self.cache is not None and not work.from_cache:
                self.cache.put_coded(work.coded_key, CodedEntry(coded.bytes, coded.notes, coded.seconds, coded.recon))
            for name, (values, state, seconds) in coded.measured.items():  # pixel metrics from the worker
                row.metrics.update(values)
                row.states[name], row.seconds[name] = state, seconds
                if self.cache is not None:
                    self.cache.put_metric(work.keys[name], values, state, seconds)
            rows.append(row)
            recons.append(coded.recon)
            keys.append(work.keys)
        self._quiesce()
        with self._main_threads.phase():
            measure(metrics, job.sample, rows, recons, batch_size=self.batch_size, cache=self.cache, keys=keys,
                    progress=self.progress)
        yield from rows
