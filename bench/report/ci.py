"""Bootstrap intervals of summary values (computing only; :mod:`bench.report.intervals` formats them).

:func:`add_intervals` bootstraps every printed value of a :func:`summarise` frame over images
(:mod:`bench.analysis.stats`: seeded, resample count recorded in ``df.attrs["ci"]``) and inserts
``<key>_lo`` / ``<key>_hi`` columns after each value. :func:`run_metrics` rebuilds a run's metrics
(used by :mod:`bench.analysis.paired`).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import pandas as pd

from bench.analysis.stats import Bootstrap, replicates
from bench.report.attrs import frame_attrs
from bench.report.summary import RANDOM_MARK, ColumnInfo, Loaded, _make_metric, _metric_names, column_info, load_run
from bench.storage.store import Store

CI_KIND = "interval"


def _ci_names(info: ColumnInfo) -> tuple[str, str]:
    mark = RANDOM_MARK if info.random_weights else ""
    return f"{info.key}_lo{mark}", f"{info.key}_hi{mark}"


def interval_columns(df: pd.DataFrame, column: str, infos: dict[str, ColumnInfo] | None = None) -> tuple[str, str] | None:
    """(lo, hi) column names of ``column`` when ``df`` carries its interval, else None."""
    infos = infos if infos is not None else column_info(df)
    info = infos.get(column)
    if info is None or info.kind == CI_KIND:
        return None
    lo, hi = _ci_names(info)
    return (lo, hi) if lo in df.columns and hi in df.columns else None


def _wanted(info: ColumnInfo) -> bool:
    return info.key == "bpp" or (info.kind in ("dataset", "mean") and not info.detail)


def run_metrics(run: dict[str, Any], rows: list[Any]) -> dict[str, Any]:
    """The run's metrics as it built them (recorded params), no network loaded; None for
    one that cannot be built here (its values then get no interval)."""
    params = run["meta"].get("metric_params") or {}
    warnings: list[str] = []
    return {n: _make_metric(n, warnings, params.get(n)) for n in _metric_names(run, rows)}


def add_intervals(df: pd.DataFrame, store: Store, run_id: str, loaded: Loaded | None = None,
                  boot: Bootstrap | None = None) -> pd.DataFrame:
    """``df`` (a :func:`summarise` frame of ``run_id``) with ``<key>_lo`` / ``<key>_hi``
    after bpp and every printed value column; ``attrs["ci"]`` records the bootstrap
    (seed, resamples, level) and the resamples used per key."""
    boot = boot or Bootstrap()
    run, rows = loaded or load_run(store, run_id)
    infos = column_info(df)
    wanted = [c for c in df.columns if _wanted(infos[c])]
    metrics = run_metrics(run, rows)
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        if r.status == "ok":
            groups.setdefault((r.codec, r.rate), []).append(r)
    lo_vals: dict[str, list[float]] = {c: [] for c in wanted}
    hi_vals: dict[str, list[float]] = {c: [] for c in wanted}
    used: dict[str, int] = {}
    for codec, rate in zip(df["codec"], df["rate"]):
        group = sorted(groups.get((codec, rate), []), key=lambda r: r.image_id)
        reps = replicates(group, metrics, boot.counts(len(group)), boot.heavy_resamples)
        for c in wanted:
            values = reps.values.get(infos[c].key)
            lo, hi = boot.interval(values) if values is not None else (math.nan, math.nan)
            lo_vals[c].append(lo)
            hi_vals[c].append(hi)
            if values is not None:
                used[infos[c].key] = len(values)
    out = df.copy()
    columns = dict(df.attrs.get("columns", {}))
    for c in reversed(wanted):
        info = infos[c]
        lo_name, hi_name = _ci_names(info)
        at = list(out.columns).index(c) + 1
        out.insert(at, hi_name, hi_vals[c])
        out.insert(at, lo_name, lo_vals[c])
        for name, side in ((lo_name, "lo"), (hi_name, "hi")):
            columns[name] = asdict(ColumnInfo(name, f"{info.key}_{side}", CI_KIND, info.unit, info.metric, None,
                                              info.random_weights, True))
    out.attrs = frame_attrs(**{**df.attrs, "columns": columns,
                               "ci": {**boot.record(), "resamples_per_key": used}})
    return out
