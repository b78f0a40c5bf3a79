"""Confidence intervals and small-N marks on summary tables and curves.

:func:`add_intervals` bootstraps every printed value of a :func:`summarise` frame over
images (:mod:`bench.analysis.stats`: seeded, resample count recorded in ``df.attrs["ci"]``) and
inserts ``<key>_lo`` / ``<key>_hi`` columns after each value (CSV keeps them; Markdown
and the console print ``value ± half-width``, LaTeX a ``[lo, hi]`` column, curves a
shaded band or error bars).

:func:`small_n` flags values computed on fewer samples than the metric needs to be stable
(FID with N < 2048: biased, covariance rank-deficient; KID with N < 1000: subsets smaller
than torch-fidelity's 1000). Flagged cells carry :data:`SMALL_N_MARK` and a footnote in
every table; flagged curve points are drawn hollow with the footnote on the figure.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.modes import BandStyle, IntervalStyle

# computing the intervals lives in bench.report.ci (re-exported here); this module formats and draws them
from bench.report.ci import CI_KIND, add_intervals, interval_columns, run_metrics  # noqa: F401
from bench.report.formatting import decimals
from bench.report.summary import ColumnInfo, column_info

SMALL_N_MARK = "*"
#: metric → (sample-count key, minimum N, why). The count key is the metric's own side value.
SMALL_N_RULES: dict[str, tuple[str, int, str]] = {
    "fid": ("fid_n", 2048, "FID from N < 2048 samples is biased and its covariance rank-deficient; "
                           "compare only values with the same N"),
    "kid": ("kid_n", 1000, "KID from N < 1000 samples uses subsets smaller than the standard 1000"),
}


# -- small N ------------------------------------------------------------------------------
def small_n(df: pd.DataFrame, column: str, infos: dict[str, ColumnInfo] | None = None) -> np.ndarray:
    """Boolean per row: the value in ``column`` comes from fewer samples than its metric
    needs (see :data:`SMALL_N_RULES`); all False for other metrics."""
    infos = infos if infos is not None else column_info(df)
    info = infos.get(column)
    flags = np.zeros(len(df), bool)
    if info is None or info.metric not in SMALL_N_RULES or info.kind not in ("dataset", "mean") or info.detail:
        return flags
    count_key, minimum, _why = SMALL_N_RULES[info.metric]
    by_key = {i.key: c for c, i in infos.items()}
    if count_key not in by_key:
        return flags
    n = pd.to_numeric(df[by_key[count_key]], errors="coerce").to_numpy(np.float64)
    return np.isfinite(n) & (n < minimum)


def small_n_notes(df: pd.DataFrame, infos: dict[str, ColumnInfo] | None = None) -> list[str]:
    """One footnote per metric with a flagged value."""
    infos = infos if infos is not None else column_info(df)
    notes = {}
    for c, info in infos.items():
        if info.metric in SMALL_N_RULES and small_n(df, c, infos).any():
            count_key, _minimum, why = SMALL_N_RULES[info.metric]
            by_key = {i.key: col for col, i in infos.items()}
            ns = pd.to_numeric(df[by_key[count_key]], errors="coerce")
            notes[info.metric] = f"{SMALL_N_MARK} {why} (N here: {int(ns.min())}–{int(ns.max())})."
    return list(notes.values())


def ci_notes(df: pd.DataFrame, lead: str = "± : half-width of the") -> list[str]:
    """The footnote stating how intervals were made, when ``df`` has them (``lead``: what
    shows them, e.g. "error bars: the")."""
    ci = df.attrs.get("ci")
    if not ci:
        return []
    per = sorted(set((ci.get("resamples_per_key") or {}).values()))
    counts = "/".join(str(p) for p in per) if per else str(ci["resamples"])
    return [f"{lead} {ci['level'] * 100:g} % percentile bootstrap interval over images "
            f"({counts} resamples, seed {ci['seed']}; FID/KID with {ci['heavy_resamples']})."]


def decorate(df: pd.DataFrame, cells: pd.DataFrame, infos: dict[str, ColumnInfo], style: IntervalStyle = "pm") -> pd.DataFrame:
    """Formatted ``cells`` (from :func:`bench.report.tables.formatted`) with small-N marks
    and, for style ``"pm"``, ``value ± half-width`` (style ``"none"``: marks only)."""
    out = cells.copy()
    for c in cells.columns:
        info = infos.get(c)
        if info is None or info.kind in ("key", "count", CI_KIND):
            continue
        pair = interval_columns(df, c, infos) if style == "pm" else None
        if pair is not None:
            places = decimals(info, df[c])
            half = (pd.to_numeric(df[pair[1]], errors="coerce") - pd.to_numeric(df[pair[0]], errors="coerce")) / 2
            out[c] = [f"{txt} ± {h:.{places}f}" if isinstance(h, float) and math.isfinite(h) else txt
                      for txt, h in zip(out[c], half.reindex(cells.index))]
        flags = pd.Series(small_n(df, c, infos), index=df.index).reindex(cells.index).fillna(False)
        out[c] = [f"{txt}{SMALL_N_MARK}" if flag else txt for txt, flag in zip(out[c], flags)]
    return out


def latex_interval_cells(df: pd.DataFrame, cells: pd.DataFrame, infos: dict[str, ColumnInfo],
                         cols: list[str]) -> tuple[pd.DataFrame, list[str], dict[str, ColumnInfo]]:
    """Insert a ``[lo, hi]`` column after each printed value that has an interval."""
    out_cols: list[str] = []
    infos = dict(infos)
    cells = cells.copy()
    for c in cols:
        out_cols.append(c)
        pair = interval_columns(df, c, infos)
        if pair is None:
            continue
        places = decimals(infos[c], df[c])
        name = f"{c} [CI]"
        lo, hi = (pd.to_numeric(df[p], errors="coerce") for p in pair)
        cells[name] = [f"[{a:.{places}f}, {b:.{places}f}]" if math.isfinite(a) and math.isfinite(b) else "--"
                       for a, b in zip(lo.reindex(cells.index), hi.reindex(cells.index))]
        level = (df.attrs.get("ci") or {}).get("level", 0.95)
        infos[name] = ColumnInfo(name, f"{level * 100:g}% CI", CI_KIND, infos[c].unit, infos[c].metric)
        out_cols.append(name)
    return cells[out_cols], out_cols, infos


# -- curves -------------------------------------------------------------------------------
def draw_interval(ax: Any, df: pd.DataFrame, column: str, data_index: pd.Index, x: Any, colour: Any,
                  style: BandStyle = "band") -> None:
    """Shaded band (``"band"``) or error bars (``"bars"``) of ``column`` at rows ``data_index``."""
    pair = interval_columns(df, column)
    if pair is None:
        return
    lo = pd.to_numeric(df.loc[data_index, pair[0]], errors="coerce").to_numpy(np.float64)
    hi = pd.to_numeric(df.loc[data_index, pair[1]], errors="coerce").to_numpy(np.float64)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return
    x = np.asarray(x, np.float64)
    if style == "band":
        ax.fill_between(x[ok], lo[ok], hi[ok], color=colour, alpha=0.18, linewidth=0)
    else:
        mid = pd.to_numeric(df.loc[data_index, column], errors="coerce").to_numpy(np.float64)
        ax.errorbar(x[ok], mid[ok], yerr=[mid[ok] - lo[ok], hi[ok] - mid[ok]], fmt="none", ecolor=colour,
                    elinewidth=0.8, capsize=2)


def draw_small_n(ax: Any, df: pd.DataFrame, column: str, data_index: pd.Index, x: Any, y: Any, colour: Any) -> bool:
    """Hollow markers over the flagged points; True when any point was flagged."""
    flags = pd.Series(small_n(df, column), index=df.index).loc[data_index].to_numpy()
    if not flags.any():
        return False
    ax.plot(np.asarray(x)[flags], np.asarray(y)[flags], linestyle="none", marker="o", markersize=9,
            markerfacecolor="none", markeredgecolor=colour, markeredgewidth=1.0)
    return True


def figure_note(ax: Any, df: pd.DataFrame, column: str) -> None:
    """The small-N footnote (and the interval footnote) at the top of the axes."""
    infos = column_info(df)
    lines = []
    metric = infos[column].metric if column in infos else None
    if small_n(df, column, infos).any() and metric in SMALL_N_RULES:
        lines += [n + " (hollow markers)" for n in small_n_notes(df, infos) if SMALL_N_RULES[metric][2] in n]
    if interval_columns(df, column, infos) is not None:
        ci = df.attrs.get("ci") or {}
        lines.append(f"bands: {ci.get('level', 0.95) * 100:g} % bootstrap interval over images "
                     f"(seed {ci.get('seed')})")
    if lines:
        ax.text(0.01, 0.99, "\n".join(lines), transform=ax.transAxes, ha="left", va="top", fontsize=5.5,
                color="0.3", wrap=True)
