"""The console table of ``bench report``: at most 100 columns, footnotes below it.

By default it prints the keys (codec, rate), bpp and one *headline* column per metric
(:func:`headline_columns`: PSNR, MS-SSIM, LPIPS, FID, KID, mIoU vs GT else vs original …),
plus the counts that say something (``n failed`` > 0, an ``n <metric>`` below ``n ok``).
Headers are short (``PSNR dB↑``); a random-weights metric's header carries ``°``. Every mark
used in a cell or header (``*``, ``†``, ``°``, ``±``) is explained in the footnotes printed
under the table. ``columns`` picks other columns (keys or column names, ``all`` for every
printed column); CSV and parquet always keep everything.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd
from tabulate import tabulate

from ..errors import ConfigError
from .intervals import ci_notes, decorate, small_n, small_n_notes
from .rates import rate_note
from .summary import ColumnInfo, column_info
from .tables import (
    FEWER_MARK,
    _align,
    fewer_images,
    formatted,
    header,
    is_metric_n,
    printed_columns,
)

#: Default width limit of the console table and its footnote lines (characters).
CONSOLE_WIDTH = 100
RANDOM_SIGN = "°"
#: Short console headers (unit and arrow are added); others use the table header.
SHORT: dict[str, str] = {"psnr": "PSNR", "msssim": "MS-SSIM", "msssim_db": "MS-SSIM", "lpips": "LPIPS",
                         "dists": "DISTS", "fid": "FID", "kid": "KID", "miou_gt": "mIoU GT",
                         "miou_orig": "mIoU orig", "n_ok": "n ok", "n_failed": "n failed",
                         "n_identical": "n ident", "bpp_paper": "bpp paper", "bpp_real": "bpp real",
                         "rate_basis": "rate basis"}
#: When a metric gives several values, the headline is the one named like the metric, else
#: the first of these, else the metric's first value column.
PREFERRED = ("miou_gt", "miou_orig", "msssim", "psnr")
#: Columns kept next to bpp when the frame has them (a paper-rate view, a formula rate).
RATE_COLUMNS = ("bpp_paper", "bpp_real", "rate_basis")


def short_header(info: ColumnInfo) -> str:
    """``"PSNR dB↑"``, ``"FID°↓"`` (° = random weights), ``"n MS-SSIM"``."""
    if info.key in SHORT:
        text = SHORT[info.key]
    elif is_metric_n(info):
        text = f"n {SHORT.get(info.metric or '', info.metric)}"
    else:
        text = header(replace(info, random_weights=False, higher_is_better=None))
    if info.unit and info.kind != "rate" and info.key in SHORT:
        text += f" {info.unit}"
    if info.random_weights:
        text += RANDOM_SIGN
    if info.kind in ("dataset", "mean") and info.higher_is_better is not None:
        text += "↑" if info.higher_is_better else "↓"
    return text


def headline_columns(df: pd.DataFrame, infos: dict[str, ColumnInfo] | None = None) -> list[str]:
    """The default console columns: codec, rate, n failed (when any failed), bpp (and the paper
    rate columns), one headline value per metric, ``n <metric>`` where it differs from n ok."""
    infos = infos if infos is not None else column_info(df)
    printed = printed_columns(df, infos)
    keep = [c for c in ("codec", "rate") if c in df.columns]
    if "n_failed" in df.columns and bool((pd.to_numeric(df["n_failed"], errors="coerce") > 0).any()):
        keep.append("n_failed")
    keep += [c for c in ("bpp", *RATE_COLUMNS) if c in printed]
    values = [c for c in printed if infos[c].kind == "dataset" and infos[c].metric]
    if not values:  # no compute() values: the per-image means
        values = [c for c in printed if infos[c].kind == "mean" and infos[c].metric]
    by_metric: dict[str, list[str]] = {}
    for c in values:
        by_metric.setdefault(str(infos[c].metric), []).append(c)
    for metric, cols in by_metric.items():
        keys = {infos[c].key: c for c in cols}
        pick = keys.get(metric) or next((keys[k] for k in PREFERRED if k in keys), cols[0])
        keep.append(pick)
        n_col = f"n_{metric}"
        if n_col in printed and n_col not in keep:
            keep.append(n_col)
    return keep


def _pick(df: pd.DataFrame, infos: dict[str, ColumnInfo], columns: Sequence[str]) -> list[str]:
    if list(columns) == ["all"]:
        return printed_columns(df, infos)
    by_key = {i.key: c for c, i in infos.items()}
    out = [c for c in ("codec", "rate") if c in df.columns]
    for name in columns:
        col = name if name in df.columns else by_key.get(name)
        if col is None:
            raise ConfigError(f"--columns: no column {name!r} in this run's summary",
                              f"pick from {', '.join(printed_columns(df, infos))} (or 'all')")
        if col not in out:
            out.append(col)
    return out


def _table(df: pd.DataFrame, infos: dict[str, ColumnInfo], keep: list[str]) -> str:
    cells, _ = formatted(df[keep], infos=infos, full=df)
    cells = decorate(df, cells, infos)
    return tabulate(cells.values.tolist(), headers=[short_header(infos[c]) for c in keep], tablefmt="simple",
                    disable_numparse=True, colalign=_align(infos, keep))


def _width(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def console_notes(df: pd.DataFrame, infos: dict[str, ColumnInfo], shown: list[str], hidden: list[str]) -> list[str]:
    """Footnotes of the console table: each mark it uses, the rate basis, what was left out."""
    notes: list[str] = []
    if "n_ok" in df.columns and "n_ok" not in shown:
        n = sorted({int(v) for v in pd.to_numeric(df["n_ok"], errors="coerce").dropna()})
        notes.append(f"n ok (images per rate point): {n[0]}" if len(n) == 1 else
                     f"n ok (images per rate point): {n[0]}–{n[-1]} (--columns n_ok shows them)")
    if any(infos[c].random_weights for c in shown):
        notes.append(f"{RANDOM_SIGN} random weights: smoke-test numbers from networks with random weights, "
                     "not measurements.")
    if any(small_n(df, c, infos).any() for c in shown):
        notes += small_n_notes(df, infos)
    if any(fewer_images(df, infos, c).any() for c in shown if c in df.columns):
        notes.append(f"{FEWER_MARK} computed on fewer images than the rate point has: the metric failed on the "
                     "others (failures.csv lists each failure).")
    notes += ci_notes(df)
    note = rate_note(df)
    if note:
        notes.append(note)
    if hidden:
        notes.append(f"{len(hidden)} more columns in summary.csv / summary.md (pick with --columns KEY,…; "
                     "--columns all prints every one).")
    notes += [f"Warning: {w}" for w in df.attrs.get("warnings", [])]
    notes += [f"Caveat: {c}" for c in df.attrs.get("caveats", [])]  # bench.report.caveats (off-domain segmenter)
    return notes


def render_console(df: pd.DataFrame, columns: Sequence[str] | None = None, width: int = CONSOLE_WIDTH) -> str:
    """The console table and its footnotes. Default columns: :func:`headline_columns`, then
    the last ones dropped until the table fits ``width`` characters; ``columns``: keys or
    column names (``["all"]``: every printed column), printed as asked whatever the width."""
    if df.empty:
        return "(no rows)"
    infos = column_info(df)
    keep = _pick(df, infos, columns) if columns else headline_columns(df, infos)
    table = _table(df, infos, keep)
    while not columns and _width(table) > width and len(keep) > 3:
        counts = [c for c in keep if infos[c].kind == "count"]  # n_<metric> first: † marks the cells anyway
        keep = [c for c in keep if c != counts[-1]] if counts else keep[:-1]
        table = _table(df, infos, keep)
    hidden = [c for c in printed_columns(df, infos) if c not in keep and c != "n_ok"]
    wrap = textwrap.TextWrapper(width, subsequent_indent="  ", break_on_hyphens=False)
    notes = [line for n in console_notes(df, infos, keep, hidden) for line in wrap.wrap(n)]
    return table + ("\n" + "\n".join(notes) if notes else "")
