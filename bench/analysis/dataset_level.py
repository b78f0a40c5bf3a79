"""Dataset-level values computed once: FID and KID stored with the hash of their states.

A metric whose states concatenate features (``merge_kind = "concat"``: FID, KID) is the
costly part of a report: its ``compute`` runs linear algebra on N×2048 features per codec ×
rate point. :func:`compute_run` computes these values at the end of ``bench run`` and stores
them in the store's ``dataset_values`` table with :func:`state_hash` — a hash of the metric's
identity (name, class, version, recorded params) and of every state array it merged, in row
order. :class:`DatasetValues` (used by :func:`bench.report.summary.summarise`, hence by
``report``, ``figures``, ``compare``, ``export`` and the HTML page) returns the stored values
while the hash matches and recomputes (and stores) them only when the states changed (a
resumed run, rows re-run with ``--retry-failed``). Sum-state metrics (PSNR, mIoU) are cheap
and always computed. Bootstrap intervals still resample the states (bench.analysis.stats).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.errors import BenchError, StoreError
from bench.metrics.base import Metric, State
from bench.storage.store import Row, Store
from bench.storage.summaries import write_through

log = logging.getLogger("bench")

#: merge kinds whose compute() is stored (see bench.analysis.stats.merge_kind)
STORED_KINDS = ("concat",)


def is_stored(metric: Metric) -> bool:
    """True for metrics whose dataset-level values are stored (FID, KID)."""
    return getattr(metric, "merge_kind", None) in STORED_KINDS


def state_hash(name: str, metric: Metric, params: dict[str, Any] | None, states: Sequence[State]) -> str:
    """Hex digest of the metric's identity and of the states (keys, dtypes, shapes, bytes),
    in the given order; equal hashes mean ``compute(merge_all(states))`` gives equal values."""
    h = hashlib.blake2b(digest_size=20)
    ident = [name, type(metric).__qualname__, getattr(metric, "version", ""), params or {}]
    h.update(json.dumps(ident, sort_keys=True, default=str).encode())
    for state in states:
        h.update(b"\x00state")
        for key in sorted(state):
            arr = np.ascontiguousarray(state[key])
            h.update(f"|{key}|{arr.dtype.str}|{arr.shape}|".encode())
            h.update(arr.data)
    return h.hexdigest()


class DatasetValues:
    """Stored dataset-level values of one run: :meth:`get` returns them while their state
    hash matches, else computes; :meth:`flush` stores what was computed."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        try:
            self.stored = store.dataset_values(run_id)
        except StoreError as err:
            log.warning("stored dataset-level values unreadable (%s); computing them", err.problem)
            self.stored = {}
        self.computed: list[tuple[str, str, str, str, dict[str, float]]] = []
        self.hits = 0

    def get(self, codec: str, rate: str, name: str, metric: Metric, params: dict[str, Any] | None,
            states: Sequence[State]) -> dict[str, float]:
        """``metric.compute(metric.merge_all(states))``, read from the store when stored for
        these very states."""
        if not is_stored(metric):
            return metric.compute(metric.merge_all(states))
        digest = state_hash(name, metric, params, states)
        hit = self.stored.get((codec, rate, name))
        if hit is not None and hit[0] == digest:
            self.hits += 1
            return {k: float(v) for k, v in hit[1].items()}
        values = {k: float(v) for k, v in metric.compute(metric.merge_all(states)).items()}
        self.computed.append((codec, rate, name, digest, values))
        self.stored[(codec, rate, name)] = (digest, values)
        return values

    def flush(self) -> int:
        """Store the values computed since the last flush; returns how many were stored.

        A store opened read-only (``report``, ``figures``, ``compare`` open it so) is written
        through a second, short-lived connection when the file and its folder are writable;
        otherwise (or when the store is busy) nothing is stored and the values are recomputed
        next time."""
        items, self.computed = self.computed, []
        if not items:
            return 0
        try:
            if not write_through(self.store, lambda s: s.put_dataset_values(self.run_id, items)):
                return 0
        except (StoreError, OSError) as err:
            log.warning("dataset-level values not stored (%s); they are recomputed next time",
                        getattr(err, "problem", err))
            return 0
        return len(items)


def _say(message: str, progress: bool) -> None:
    """A line on stderr beside the progress bars (a log line at INFO when they are off)."""
    if progress:
        tqdm.write(message, file=sys.stderr)
    else:
        log.info(message)


def run_metric(name: str, params: dict[str, Any] | None) -> Metric | None:
    """The metric as a run recorded it, built without loading a network (None if unknown)."""
    from bench.registry import catalog

    try:
        return catalog.make_metric(name, **{**(params or {}), "allow_random_weights": True})
    except BenchError as err:
        log.warning("%s: dataset-level values skipped (%s)", name, err.problem)
        return None


def compute_run(store: Store, run_id: str, *, progress: bool = True,
                rows: Sequence[Row] | None = None) -> int:
    """Compute and store the FID/KID values of every codec × rate point of a run whose
    stored values are missing or stale, one progress bar per metric, with a line before
    and after each; returns how many values were computed."""
    run = store.run(run_id)
    rows = list(store.rows(run["run_id"])) if rows is None else rows
    params = run["meta"].get("metric_params") or {}
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        if r.status == "ok":
            groups[(r.codec, r.rate)].append(r)
    names = sorted({m for r in rows for m in r.states})
    values = DatasetValues(store, run["run_id"])
    done = 0
    for name in names:
        metric = run_metric(name, params.get(name))
        if metric is None or not is_stored(metric):
            continue
        todo = [(key, [r.states[name] for r in g if name in r.states]) for key, g in groups.items()]
        todo = [(key, states) for key, states in todo if states]
        if not todo:
            continue
        n_states = max(len(s) for _key, s in todo)
        _say(f"dataset-level {name}: computing {len(todo)} rate points (up to {n_states} images each)", progress)
        start = time.perf_counter()
        before = len(values.computed)
        bar = tqdm(todo, desc=f"dataset-level {name}", unit="point", disable=not progress, leave=True)
        for (codec, rate), states in bar:
            try:
                values.get(codec, rate, name, metric, params.get(name), states)
            except Exception as err:  # noqa: BLE001 - one value's failure stays that value's (report says why)
                log.warning("dataset-level %s of %s @ %s failed (%s: %s)", name, codec, rate, type(err).__name__, err)
        bar.close()
        new = len(values.computed) - before
        done += new
        values.flush()
        _say(f"dataset-level {name}: done in {time.perf_counter() - start:.1f} s "
             f"({new} computed, {len(todo) - new} already stored)", progress)
    return done
