"""The per-image work of a run: code (encode + decode) and measure (batched metrics).

``LocalExecutor`` streams images one at a time (memory stays flat in dataset size):
for each image it looks every codec × rate up in the :class:`ResultCache`, sends the
misses of parallel-safe codecs to a process pool, and measures the reconstructions of
the *previous* image meanwhile, so CPU codec work overlaps with metric-network work.
Metrics see all reconstructions of one image together, in batches of ``batch_size``.
"""

from __future__ import annotations

import math
import os
import pickle
import time
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bench.codecs.base import Codec, Semantics, bits_per_pixel, part_sizes
from bench.datasets.base import Dataset, Sample
from bench.errors import BenchError, ConfigError
from bench.execution.guard import CodingPool, PoolUnusable, call_with_timeout, coding_timeout
from bench.execution.resultcache import CodedEntry, ResultCache, coded_key, identity, metric_key, sample_key
from bench.metrics.base import Metric, Pair, State
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


@dataclass
class Coded:
    """One encode + decode: byte counts per part, notes (numbers go to the row's metrics,
    text such as the semantics source to the row's notes), timings, reconstruction."""

    bytes: dict[str, int] = field(default_factory=dict)
    notes: dict[str, float | str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    recon: np.ndarray | None = None
    error: str | None = None
    measured: dict[str, tuple[dict[str, float], State, float]] = field(default_factory=dict)  # in a worker


def semantics_for(codec: Codec, sample: Sample, class_set: str | None) -> Semantics | None:
    """Ground-truth semantics for codecs that need a label map (else None)."""
    if not codec.needs_semantics:
        return None
    if sample.labels is None or class_set is None:
        raise ConfigError(
            f"codec {codec.name!r} needs a label map and the dataset has none for {sample.id}",
            "use a dataset with labels (cityscapes, coco, demo) or give the codec a segmenter",
        )
    return Semantics(labels=sample.labels, class_set=class_set, source="ground-truth")


class SegmenterSemantics:
    """The sender's label map from a segmenter run on the original (cached by content),
    recorded as ``segmenter:<id>`` — for datasets without labels, or by choice."""

    def __init__(self, segmenter: Any) -> None:
        from bench.segmenters import extractor_id

        self.segmenter = segmenter
        self.identity = extractor_id(segmenter)  # "segmenter:<name>-<settings>@<weights>"

    def __call__(self, sample: Sample) -> Semantics:
        from bench.segmenters import segment_cached

        labels = segment_cached(self.segmenter, sample.image)
        return Semantics(labels=labels, class_set=self.segmenter.class_set.name, source=self.identity)


def _describe_error(err: BaseException) -> str:
    if isinstance(err, BenchError):
        return f"{type(err).__name__}: {err}"
    return f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"


def code(codec: Codec, rate: Any, sample: Sample, class_set: str | None,
         semantics: Any = None) -> Coded:
    """Encode and decode one image; a failure is returned as ``Coded.error``, never raised.

    ``semantics``: a callable sample → :class:`Semantics` for codecs that need a label map
    (default: the dataset's ground truth).
    """
    out = Coded()
    try:
        sem = None
        if codec.needs_semantics:
            sem = semantics(sample) if semantics is not None else semantics_for(codec, sample, class_set)
        t0 = time.perf_counter()
        encoded = codec.encode(sample.image, rate, semantics=sem)
        t1 = time.perf_counter()
        sizes = part_sizes(encoded.parts)  # CodecError unless every part is bytes-like
        recon = codec.decode(dict(encoded.parts))
        out.seconds = {"encode": t1 - t0, "decode": time.perf_counter() - t1}
        out.bytes = sizes
        out.notes = {k: (float(v) if isinstance(v, (int, float)) else str(v)) for k, v in encoded.notes.items()
                     if isinstance(v, (int, float, str))}
        if recon.shape != sample.image.shape or recon.dtype != np.uint8:
            raise BenchError(f"codec {codec.name} decoded {recon.dtype}{recon.shape}, "
                             f"expected uint8{sample.image.shape}", "fix the adapter's decode")
        out.recon = recon
    except Exception as err:  # recorded for this image; the run goes on
        out.error = _describe_error(err)
    return out


def code_within(codec: Codec, rate: Any, sample: Sample, class_set: str | None, semantics: Any,
                seconds: float | None) -> Coded:
    """:func:`code` in this process, given up after ``seconds`` (None: no limit) as a failed
    coding; the call runs on in an abandoned thread (see :mod:`bench.execution.guard`)."""
    try:
        return call_with_timeout(lambda: code(codec, rate, sample, class_set, semantics), seconds)
    except BenchError as err:
        return Coded(error=_describe_error(err))


def base_row(codec: Codec, rate: Any, sample: Sample, coded: Coded) -> Row:
    """The row of one coded image before metrics: bytes, bpp (total and per part), notes."""
    row = Row(codec=codec.name, rate=codec.rate_label(rate), image_id=sample.id,
              height=sample.height, width=sample.width)
    sha = sample.meta.get("image_sha256")  # the pixels this row coded (Dataset.get)
    if coded.error:
        row.status, row.error = "error", coded.error
        row.notes = {"image_sha256": sha} if sha else {}
        return row
    row.bytes = dict(coded.bytes)
    row.bpp = bits_per_pixel(sum(coded.bytes.values()), sample.height, sample.width)
    row.metrics.update({f"bpp_{n}": bits_per_pixel(b, sample.height, sample.width) for n, b in coded.bytes.items()})
    row.metrics.update({k: v for k, v in coded.notes.items() if isinstance(v, float)})
    row.notes = {k: v for k, v in coded.notes.items() if isinstance(v, str)}
    if sha:
        row.notes["image_sha256"] = sha
    row.seconds = dict(coded.seconds)
    return row


def fill_cached(row: Row, metrics: Sequence[Metric], keys: dict[str, str], cache: ResultCache) -> list[Metric]:
    """Fill ``row`` with cached metric results; returns the metrics still to compute."""
    missing = []
    for metric in metrics:
        hit = cache.get_metric(keys[metric.name])
        if hit is None:
            missing.append(metric)
            continue
        values, state, seconds = hit
        row.metrics.update(values)
        row.states[metric.name] = state
        row.seconds[metric.name] = seconds
    return missing


def measure(metrics: Sequence[Metric], sample: Sample | Sequence[Sample], rows: Sequence[Row],
            recons: Sequence[np.ndarray], *, batch_size: int = 8, cache: ResultCache | None = None,
            keys: Sequence[dict[str, str]] | None = None, progress: Any = None) -> None:
    """Run every metric on reconstructions, in batches; fills ``rows``.

    ``sample`` is the original of every row, or one original per row.
    Values do not depend on ``batch_size`` (metrics guarantee it).

    A metric that raises or returns NaN on an image fails for that image only: the error
    goes to ``row.metric_errors[metric]``, that metric's values and state are left out, and
    the row stays ``ok`` with every other value (bpp, the other metrics). A batch that
    raises is retried image by image, so one bad image does not fail its batch mates.

    ``keys[i][metric.name]`` are metric cache keys; cached results are reused, fresh ones stored.
    ``progress(metric name, n)`` is told of every measured batch (bench.execution.progress).
    """
    samples = [sample] * len(rows) if isinstance(sample, Sample) else list(sample)
    use_cache = cache is not None and keys is not None
    missing = []
    for i, row in enumerate(rows):
        wanted = [m for m in metrics if m.name not in row.states]  # not those measured in a codec worker
        missing.append(fill_cached(row, wanted, keys[i], cache) if use_cache else wanted)  # type: ignore[index, arg-type]  # use_cache implies keys and cache are not None
    for metric in metrics:
        todo = [i for i in range(len(rows)) if metric in missing[i]]
        for start in range(0, len(todo), max(1, batch_size)):
            chunk = todo[start:start + max(1, batch_size)]
            done = _update(metric, chunk, samples, rows, recons)
            if done is None and len(chunk) > 1:  # find the image(s) that fail; keep the others
                done = [r for i in chunk for r in (_update(metric, [i], samples, rows, recons) or [])]
            if progress is not None:
                progress(metric.name, len(chunk))
            for i, state, values, seconds in done or []:
                nans = _nan_keys(values)
                if nans:
                    rows[i].metric_errors[metric.name] = f"NaN in {', '.join(nans)}"
                    continue
                rows[i].metrics.update(values)
                rows[i].states[metric.name] = state
                rows[i].seconds[metric.name] = seconds
                if use_cache:
                    cache.put_metric(keys[i][metric.name], values, state, seconds)  # type: ignore[index, union-attr]  # use_cache implies keys and cache are not None


def _nan_keys(values: dict[str, Any]) -> list[str]:
    """The value names that are NaN (a metric's failure on that image)."""
    return [k for k, v in values.items() if isinstance(v, float) and math.isnan(v)]


def _update(metric: Metric, chunk: list[int], samples: Sequence[Sample], rows: Sequence[Row],
            recons: Sequence[np.ndarray]) -> list[tuple[int, State, dict[str, float], float]] | None:
    """``metric.update_batch`` on rows ``chunk``: (row index, state, values, seconds per image)
    each, or None when it raised (the error is then recorded on every row of the chunk, to be
    overwritten by a per-image retry)."""
    pairs = [Pair(samples[i], recons[i], sum(rows[i].bytes.values()), rows[i].codec, rows[i].rate) for i in chunk]
    states: list[State] = [metric.init() for _ in chunk]
    t0 = time.perf_counter()
    try:
        results = metric.update_batch(states, pairs)
    except Exception as err:  # recorded for these images; the run goes on
        message = err.problem if isinstance(err, BenchError) else _describe_error(err)
        for i in chunk:
            rows[i].metric_errors[metric.name] = message
        return None
    for i in chunk:
        rows[i].metric_errors.pop(metric.name, None)
    seconds = (time.perf_counter() - t0) / len(chunk)
    return [(i, state, values, seconds) for i, state, values in zip(chunk, states, results)]


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
