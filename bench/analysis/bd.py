"""Bjøntegaard deltas of two rate–quality curves (BD-rate %, BD-metric), via ``bjontegaard``.

Interpolation is PCHIP on (metric, log10 bpp) as in ``bjontegaard.bd_rate(..., method="pchip")``.
A leaf module: :mod:`bench.analysis.compare` and :mod:`bench.analysis.paired` both use it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

BD_METHOD = "pchip"

@dataclass(frozen=True)
class Curve:
    """A rate–quality curve: ``bpp`` strictly increasing and > 0, ``value`` in metric units."""

    bpp: np.ndarray
    value: np.ndarray

    @classmethod
    def from_points(cls, bpp: Iterable[float], value: Iterable[float]) -> Curve:
        """Drop non-finite points and bpp ≤ 0, average points with equal bpp, sort by bpp."""
        df = pd.DataFrame({"bpp": np.asarray(list(bpp), float), "value": np.asarray(list(value), float)})
        df = df[np.isfinite(df["bpp"]) & np.isfinite(df["value"]) & (df["bpp"] > 0)]
        df = df.groupby("bpp", as_index=False)["value"].mean().sort_values("bpp")
        return cls(df["bpp"].to_numpy(), df["value"].to_numpy())

    def __len__(self) -> int:
        return len(self.bpp)


@dataclass(frozen=True)
class BDResult:
    """Bjøntegaard deltas of a test curve against an anchor.

    ``bd_rate``: percent (negative = fewer bits at equal quality); ``bd_metric``: test −
    anchor in metric units at equal bpp; NaN when undefined, with the reason in ``notes``.
    ``quality_overlap`` / ``rate_overlap``: overlapping fraction (0..1) of the union range.
    """

    bd_rate: float
    bd_metric: float
    quality_overlap: float
    rate_overlap: float
    notes: tuple[str, ...] = ()


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    union = max(a.max(), b.max()) - min(a.min(), b.min())
    frac = max(hi - lo, 0.0) / union if union > 0 else (1.0 if hi >= lo else 0.0)
    return float(lo), float(hi), float(frac)


def _monotonic(curve: Curve, higher_is_better: bool) -> bool:
    step = np.diff(curve.value)
    return bool(np.all(step > 0) if higher_is_better else np.all(step < 0))


def bd_rate(anchor: Curve, test: Curve, *, higher_is_better: bool = True, method: str = BD_METHOD) -> tuple[float, str]:
    """BD-rate in percent and a note ("" when defined). Needs ≥ 2 points per curve, the
    metric strictly monotonic in bpp (better with more bits) and an overlapping range."""
    import bjontegaard

    for name, c in (("anchor", anchor), ("test", test)):
        if len(c) < 2:
            return math.nan, f"{name} has {len(c)} rate point(s); BD-rate needs 2 or more"
        if not _monotonic(c, higher_is_better):
            return math.nan, f"{name}'s metric is not strictly {'increasing' if higher_is_better else 'decreasing'} in bpp"
    lo, hi, frac = _overlap(anchor.value, test.value)
    if hi <= lo:
        return math.nan, "no overlapping metric range"
    # bjontegaard interpolates log-rate over the metric: pass points sorted by metric value.
    ia, it = np.argsort(anchor.value), np.argsort(test.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = bjontegaard.bd_rate(anchor.bpp[ia], anchor.value[ia], test.bpp[it], test.value[it], method,
                                    require_matching_points=False, min_overlap=0)
    return float(value), ""


def bd_metric(anchor: Curve, test: Curve, *, method: str = BD_METHOD) -> tuple[float, str]:
    """Average metric difference (test − anchor, metric units) over the overlapping
    log10-bpp range, and a note ("" when defined)."""
    import bjontegaard

    for name, c in (("anchor", anchor), ("test", test)):
        if len(c) < 2:
            return math.nan, f"{name} has {len(c)} rate point(s); BD-metric needs 2 or more"
    lo, hi, _ = _overlap(np.log10(anchor.bpp), np.log10(test.bpp))
    if hi <= lo:
        return math.nan, "no overlapping bpp range"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = bjontegaard.bd_psnr(anchor.bpp, anchor.value, test.bpp, test.value, method,
                                    require_matching_points=False, min_overlap=0)
    return float(value), ""


def bjontegaard_delta(anchor: Curve, test: Curve, *, higher_is_better: bool = True,
                      method: str = BD_METHOD) -> BDResult:
    """BD-rate and BD-metric of ``test`` against ``anchor``."""
    rate, note_r = bd_rate(anchor, test, higher_is_better=higher_is_better, method=method)
    metric, note_m = bd_metric(anchor, test, method=method)
    q = _overlap(anchor.value, test.value)[2] if len(anchor) and len(test) else 0.0
    r = _overlap(np.log10(anchor.bpp), np.log10(test.bpp))[2] if len(anchor) and len(test) else 0.0
    few = "rate point(s); BD-"
    if few in note_r and note_r.split(few)[0] == note_m.split(few)[0]:  # the same curve too short for both
        notes: tuple[str, ...] = (note_r.replace("BD-rate needs", "BD-rate and BD-metric need"),)
    else:
        notes = tuple(n for n in (note_r and f"BD-rate: {note_r}", note_m and f"BD-metric: {note_m}") if n)
    return BDResult(rate, metric, q, r, notes)
