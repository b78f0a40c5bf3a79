"""Paired comparisons of two runs over the same images, with bootstrap intervals.

For an anchor codec (run A) and a test codec (run B) on the same dataset:

* **per matched rate point** (same rate label, or pairs given in ``rate_map``): the
  difference B − A of every compared value over the images that succeeded on both sides,
  with its percentile interval from resampling those images (one set of draws for both
  sides, :mod:`bench.analysis.stats`), so a run against itself gives exactly 0 with a zero-width
  interval;
* **BD-rate / BD-metric intervals**: the image set common to every rate point of both
  curves is resampled, both curves' per-rate-point values (bpp and metric) recomputed from
  the stored rows and states, and the Bjøntegaard deltas recomputed per replicate.

:func:`significance` turns these into verdicts: a codec × metric is a *significant
regression* when the interval of the quantity the tolerance gate uses (BD-rate, else
BD-metric, else the per-point differences) excludes zero on the worse side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.bd import Curve, bd_metric, bd_rate
from bench.analysis.stats import Bootstrap, replicates
from bench.analysis.tolerance import MIN_IMAGES
from bench.storage.store import Row

POINT_COLUMNS = ["codec", "metric", "rate_a", "rate_b", "n_images", "value_a", "value_b", "delta", "delta_lo",
                 "delta_hi", "resamples", "significant"]
BD_COLUMNS = ["codec", "metric", "ci_images", "bd_rate_lo", "bd_rate_hi", "bd_metric_lo", "bd_metric_hi",
              "ci_resamples", "bd_rate_defined", "bd_metric_defined"]
#: Share of replicates in which a Bjøntegaard delta must be defined for its interval to count.
MIN_DEFINED = 0.9


def _ok_rows(rows: Sequence[Row], codec: str) -> dict[str, dict[str, Row]]:
    """rate → image id → ok row of ``codec``."""
    out: dict[str, dict[str, Row]] = {}
    for r in rows:
        if r.codec == codec and r.status == "ok":
            out.setdefault(r.rate, {})[r.image_id] = r
    return out


def matched_rates(rates_a: Sequence[str], rates_b: Sequence[str],
                  rate_map: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(rate of A, rate of B) pairs: ``rate_map`` entries present on both sides, then the
    labels both sides share (a label mapped explicitly is not also matched by name)."""
    mapped = [(a, b) for a, b in (rate_map or {}).items() if a in rates_a and b in rates_b]
    taken_a, taken_b = {a for a, _ in mapped}, {b for _, b in mapped}
    return mapped + [(r, r) for r in rates_a if r in rates_b and r not in taken_a and r not in taken_b]


def paired_points(rows_a: Sequence[Row], rows_b: Sequence[Row], metrics_a: Mapping[str, Any],
                  metrics_b: Mapping[str, Any], anchor: str, test: str, keys: Sequence[str], boot: Bootstrap,
                  rate_map: Mapping[str, str] | None = None, label: str | None = None) -> pd.DataFrame:
    """One row per key × matched rate point: B − A over the common images and its interval.
    ``significant``: the interval excludes 0."""
    by_a, by_b = _ok_rows(rows_a, anchor), _ok_rows(rows_b, test)
    label = label or (anchor if anchor == test else f"{anchor} → {test}")
    out = []
    for rate_a, rate_b in matched_rates(list(by_a), list(by_b), rate_map):
        common = sorted(set(by_a[rate_a]) & set(by_b[rate_b]))
        ra, rb = [by_a[rate_a][i] for i in common], [by_b[rate_b][i] for i in common]
        counts = boot.counts(len(common))
        full = np.ones((1, len(common)))
        va, vb = replicates(ra, metrics_a, full).values, replicates(rb, metrics_b, full).values
        rep_a = replicates(ra, metrics_a, counts, boot.heavy_resamples).values
        rep_b = replicates(rb, metrics_b, counts, boot.heavy_resamples).values
        for key in ["bpp", *keys]:
            if key not in rep_a or key not in rep_b:
                continue
            m = min(len(rep_a[key]), len(rep_b[key]))
            with np.errstate(invalid="ignore"):  # inf − inf (a lossless PSNR): no interval, not a warning
                lo, hi = boot.interval(rep_b[key][:m] - rep_a[key][:m])
            a, b = float(va[key][0]), float(vb[key][0])
            out.append({"codec": label, "metric": key, "rate_a": rate_a, "rate_b": rate_b, "n_images": len(common),
                        "value_a": a, "value_b": b, "delta": b - a, "delta_lo": lo, "delta_hi": hi, "resamples": m,
                        "significant": bool(lo > 0 or hi < 0)})
    return pd.DataFrame(out, columns=POINT_COLUMNS)


def bd_intervals(rows_a: Sequence[Row], rows_b: Sequence[Row], metrics_a: Mapping[str, Any],
                 metrics_b: Mapping[str, Any], anchor: str, test: str, keys: Sequence[str],
                 higher_is_better: Mapping[str, bool], boot: Bootstrap, method: str = "pchip",
                 label: str | None = None) -> pd.DataFrame:
    """BD-rate (%) and BD-metric intervals per key from resampling the images common to
    every rate point of both curves (NaN when fewer than 2 images or the deltas are
    undefined in every replicate)."""
    by_a, by_b = _ok_rows(rows_a, anchor), _ok_rows(rows_b, test)
    label = label or (anchor if anchor == test else f"{anchor} → {test}")
    sets = [set(v) for v in (*by_a.values(), *by_b.values())]
    common = sorted(set.intersection(*sets)) if sets else []
    out = []
    if len(common) < 2:
        return pd.DataFrame([{"codec": label, "metric": k, "ci_images": len(common)} for k in keys], columns=BD_COLUMNS)
    counts = boot.counts(len(common))
    side = []
    for by, metrics in ((by_a, metrics_a), (by_b, metrics_b)):
        side.append([replicates([by[rate][i] for i in common], metrics, counts, boot.heavy_resamples).values
                     for rate in by])
    for key in keys:
        if not all(key in reps for s in side for reps in s):
            out.append({"codec": label, "metric": key, "ci_images": len(common)})
            continue
        m = min(len(reps[key]) for s in side for reps in s)
        rates, metrics_bd = [], []
        for b in range(m):
            ca, cb = (_curve(Curve, [reps["bpp"][b] for reps in s], [reps[key][b] for reps in s]) for s in side)
            rates.append(bd_rate(ca, cb, higher_is_better=higher_is_better[key], method=method)[0])
            metrics_bd.append(bd_metric(ca, cb, method=method)[0])
        r_lo, r_hi = boot.interval(np.array(rates))
        m_lo, m_hi = boot.interval(np.array(metrics_bd))
        out.append({"codec": label, "metric": key, "ci_images": len(common), "bd_rate_lo": r_lo, "bd_rate_hi": r_hi,
                    "bd_metric_lo": m_lo, "bd_metric_hi": m_hi, "ci_resamples": m,
                    "bd_rate_defined": float(np.isfinite(rates).mean()),
                    "bd_metric_defined": float(np.isfinite(metrics_bd).mean())})
    return pd.DataFrame(out, columns=BD_COLUMNS)


def _curve(cls: Any, bpp: Sequence[float], value: Sequence[float]) -> Any:
    """``Curve.from_points`` without pandas when every point is finite with a distinct bpp > 0
    (the usual case; thousands of replicates)."""
    x, y = np.asarray(bpp, np.float64), np.asarray(value, np.float64)
    if np.isfinite(x).all() and np.isfinite(y).all() and (x > 0).all() and len(np.unique(x)) == len(x):
        order = np.argsort(x)
        return cls(x[order], y[order])
    return cls.from_points(x, y)


def _worse_side(lo: float, hi: float, worse_if_positive: bool) -> str:
    """"worse" / "better" when the interval excludes 0 on that side, else "same"."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    if lo > 0:
        return "worse" if worse_if_positive else "better"
    if hi < 0:
        return "better" if worse_if_positive else "worse"
    return "same"


def significance(metrics: pd.DataFrame, points: pd.DataFrame,
                 min_images: int = MIN_IMAGES) -> tuple[list[str], list[str], list[str]]:
    """Significant verdict per row of a comparison's metric table (with the interval
    columns of :func:`bd_intervals`) on the basis the tolerance gate used; returns
    (verdicts, regression lines). A BD interval counts only when the delta is defined in
    at least :data:`MIN_DEFINED` of the replicates (else "n/a": resampling often breaks
    the curve's monotonicity or overlap, and the interval of the rest would be biased).
    An interval from fewer than ``min_images`` images gets no verdict ("too few images") and
    a line in the third list (returns verdicts, regression lines, too-few-images lines)."""
    verdicts, lines, too_few = [], [], []
    for row in metrics.itertuples():
        hib = bool(row.higher_is_better)
        if row.basis in ("bd_rate", "bd_metric"):
            n = int(row.ci_images) if row.ci_images == row.ci_images else 0
        else:
            pts = points[(points["codec"] == row.codec) & (points["metric"] == row.metric)]
            n = int(pts["n_images"].min()) if len(pts) else 0
        if row.basis != "none" and n < min_images:
            verdicts.append("too few images")
            too_few.append(f"{row.codec}: {row.metric} interval from N={n} images (minimum {min_images})")
            continue
        if row.basis == "bd_rate":
            v = _worse_side(row.bd_rate_lo, row.bd_rate_hi, True) if row.bd_rate_defined >= MIN_DEFINED else "n/a"
            why = f"BD-rate {row.bd_rate_pct:+.2f}% [{row.bd_rate_lo:+.2f}, {row.bd_rate_hi:+.2f}], N={n} images"
        elif row.basis == "bd_metric":
            v = (_worse_side(row.bd_metric_lo, row.bd_metric_hi, not hib) if row.bd_metric_defined >= MIN_DEFINED
                 else "n/a")
            why = (f"BD-{row.metric} {row.bd_metric:+.4g} [{row.bd_metric_lo:+.4g}, {row.bd_metric_hi:+.4g}], "
                   f"N={n} images")
        else:
            sides = [_worse_side(p.delta_lo, p.delta_hi, not hib) for p in pts.itertuples()]
            known = [s for s in sides if s != "n/a"]
            v = ("worse" if "worse" in known else "better" if known and all(s == "better" for s in known)
                 else "same" if known else "n/a")
            why = "paired difference at rate point(s) " + ", ".join(
                f"{p.rate_a}→{p.rate_b} {p.delta:+.4g} [{p.delta_lo:+.4g}, {p.delta_hi:+.4g}] over {p.n_images} images"
                for p, s in zip(pts.itertuples(), sides) if s == "worse")
        verdicts.append(v)
        if v == "worse":
            lines.append(f"{row.codec}: {row.metric} regressed significantly — {why} (95 % interval excludes 0)")
    return verdicts, lines, too_few


@dataclass(frozen=True)
class PairedIntervals:
    """What :func:`paired_intervals` adds to a comparison: ``metrics`` (the comparison's metric
    table with interval columns and ``significant`` verdicts), ``paired`` (B − A per matched
    rate point), ``significant_regressions`` (lines), ``too_few_images`` (intervals from fewer
    images than the minimum: the significant gate refuses to judge them) and ``bootstrap``
    (the settings)."""

    metrics: pd.DataFrame
    paired: pd.DataFrame
    significant_regressions: list[str]
    too_few_images: list[str]
    bootstrap: dict[str, Any]


def paired_intervals(metrics: pd.DataFrame, run_a: Mapping[str, Any], rows_a: Sequence[Row],
                     run_b: Mapping[str, Any], rows_b: Sequence[Row], pairs: Sequence[tuple[str, str]],
                     boot: Bootstrap, *, rate_map: Mapping[str, str] | None = None,
                     method: str = "pchip", min_images: int = MIN_IMAGES) -> PairedIntervals:
    """Paired intervals for a comparison's metric table ``metrics`` (one row per codec pair ×
    metric, with ``higher_is_better``, ``basis`` and the BD values): a new value, nothing mutated."""
    from bench.report.ci import run_metrics

    metrics_a = run_metrics(dict(run_a), list(rows_a))
    metrics_b = metrics_a if rows_b is rows_a else run_metrics(dict(run_b), list(rows_b))
    keys = list(dict.fromkeys(metrics["metric"]))
    hib = dict(zip(metrics["metric"], metrics["higher_is_better"]))
    points, bds = [], []
    for anchor, test in pairs:
        points.append(paired_points(rows_a, rows_b, metrics_a, metrics_b, anchor, test, keys, boot, rate_map))
        bds.append(bd_intervals(rows_a, rows_b, metrics_a, metrics_b, anchor, test, keys, hib, boot, method))
    paired = pd.concat(points, ignore_index=True) if points else pd.DataFrame(columns=POINT_COLUMNS)
    bd = pd.concat(bds, ignore_index=True) if bds else pd.DataFrame(columns=BD_COLUMNS)
    merged = metrics.merge(bd, on=["codec", "metric"], how="left")
    verdicts, lines, too_few = significance(merged, paired, min_images)
    merged["significant"] = verdicts
    return PairedIntervals(merged, paired, lines, too_few, boot.record())
