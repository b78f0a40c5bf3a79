"""The per-image work of a run: code (encode + decode) and measure (batched metrics).

``LocalExecutor`` (:mod:`bench.execution.local`) streams images one at a time (memory stays flat in dataset size):
for each image it looks every codec × rate up in the :class:`ResultCache`, sends the
misses of parallel-safe codecs to a process pool, and measures the reconstructions of
the *previous* image meanwhile, so CPU codec work overlaps with metric-network work.
Metrics see all reconstructions of one image together, in batches of ``batch_size``.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.codecs.base import Codec, Semantics, bits_per_pixel, part_sizes
from bench.datasets.base import Sample
from bench.errors import BenchError, ConfigError
from bench.execution.guard import call_with_timeout
from bench.execution.resultcache import ResultCache
from bench.metrics.base import Metric, Pair, State
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
