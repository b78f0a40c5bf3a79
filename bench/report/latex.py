"""LaTeX summary tables: booktabs, at most 8 columns each, one table per metric group.

Every table repeats the keys (codec, rate) and bpp, then holds one group's columns: the
byte parts, then each metric's values (its ``n <metric>`` and ``[lo, hi]`` interval columns
with it). A group wider than the limit is split over several tables. With ``bold_best`` the
best value of each metric among the codecs that share a rate label (matched-rate runs, e.g.
``jpeg-matched`` and ``bpg-matched`` at the same target bpp) is set in bold; the reference
``original`` row is never a contender. Footnotes go into each table's caption.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.modes import REFERENCE_CODEC

from .intervals import CI_KIND, decorate, latex_interval_cells
from .summary import ColumnInfo, column_info
from .tables import (
    LATEX_ARROWS,
    LATEX_FEWER_MARK,
    _notes,
    formatted,
    latex_escape,
    pretty_name,
    printed_columns,
)

#: Most columns of one LaTeX table (keys and bpp included): one page column of a paper.
MAX_COLUMNS = 8
KEYS = ("codec", "rate", "bpp", "rate_basis")


def _head(info: ColumnInfo) -> str:
    text = latex_escape(pretty_name(info))
    if info.unit and info.kind != "rate":
        text += f" [{latex_escape(info.unit)}]"
    if info.kind in ("dataset", "mean") and info.higher_is_better is not None:
        text += " " + LATEX_ARROWS[info.higher_is_better]
    return text


def groups(cols: list[str], infos: dict[str, ColumnInfo], max_columns: int = MAX_COLUMNS) -> list[tuple[str, list[str]]]:
    """(name, columns) per table: keys + bpp in each, then whole metric groups (several small
    ones share a table; a group wider than the limit is split)."""
    keys = [c for c in cols if c in KEYS]
    budget = max(1, max_columns - len(keys))
    named: dict[str, list[str]] = {}
    for c in cols:
        if c in keys:
            continue
        info = infos[c]
        name = "rate and counts" if info.kind in ("rate", "count") and not info.metric else str(info.metric or "other")
        named.setdefault(name, []).append(c)
    out: list[tuple[str, list[str]]] = []
    for name, members in named.items():
        chunks = [members[i:i + budget] for i in range(0, len(members), budget)]
        if len(chunks) == 1 and out and len(out[-1][1]) - len(keys) + len(members) <= budget \
                and not out[-1][0].endswith(")"):  # small groups share a table (FID, KID, LPIPS)
            out[-1] = (f"{out[-1][0]}, {name}", out[-1][1] + members)
            continue
        for k, chunk in enumerate(chunks):
            out.append((name if len(chunks) == 1 else f"{name} ({k + 1}/{len(chunks)})", keys + chunk))
    return out or [("summary", keys)]


def best_rows(df: pd.DataFrame, column: str, info: ColumnInfo) -> pd.Series:
    """Per row: holds the best finite value of ``column`` among the codecs (``original``
    excluded) sharing its rate label, where at least two codecs share it."""
    flags = pd.Series(False, index=df.index)
    if info.higher_is_better is None or info.kind not in ("dataset", "mean") or "rate" not in df:
        return flags
    values = pd.to_numeric(df[column], errors="coerce")
    for idx in df[df["codec"] != REFERENCE_CODEC].groupby("rate").groups.values():
        v = values.loc[idx]
        v = v[v.map(math.isfinite)]
        if df.loc[v.index, "codec"].nunique() < 2:
            continue
        best = v.max() if info.higher_is_better else v.min()
        flags.loc[v.index[v == best]] = True
    return flags


def to_latex_tables(df: pd.DataFrame, *, bold_best: bool = False, max_columns: int = MAX_COLUMNS) -> str:
    """The summary as booktabs tables of at most ``max_columns`` columns, one per metric
    group (``\\toprule``/``\\midrule``/``\\bottomrule``); a codec's name is printed on its
    first rate point only; ``bold_best``: see the module docstring."""
    infos = column_info(df)
    cols = printed_columns(df, infos)
    parts = [c for c in cols if infos[c].kind == "rate" and c.startswith("bpp_") and c in df.attrs.get("columns", {})
             and c[4:] in (df.attrs.get("parts") or [])]
    if len(parts) == 1:  # one byte part: its bpp is the bpp
        cols.remove(parts[0])
    cells, _ = formatted(df[cols], nan="--", inf=r"$\infty$", infos=infos, full=df, mark=LATEX_FEWER_MARK)
    cells = decorate(df, cells, infos, style="none")  # small-N marks
    cells, cols, infos = latex_interval_cells(df, cells, infos, cols)  # [lo, hi] columns
    for c in cols:
        if infos[c].kind == "key":
            cells[c] = [latex_escape(v) for v in cells[c]]
    if bold_best:
        for c in cols:
            if c in df.columns and infos[c].kind != CI_KIND:
                flags = best_rows(df, c, infos[c])
                cells[c] = [rf"\textbf{{{v}}}" if f else v for v, f in zip(cells[c], flags.reindex(cells.index))]
    if "codec" in cells and len(cells):
        first = cells["codec"].ne(cells["codec"].shift())
        cells["codec"] = cells["codec"].where(first, "")
    caption = ("Rate--distortion summary per codec and rate point: bpp is the mean over images; "
               "metrics are dataset-level values over the same images.")
    if bold_best:
        caption += " Bold: the best value among the codecs at the same rate point."
    notes = " ".join(latex_escape(n) for n in _notes(df))
    run_id = df.attrs.get("run_id") or "summary"
    out: list[str] = []
    first_label = ""
    for name, members in groups(cols, infos, max_columns):
        part = cells[members].copy()
        part.columns = [_head(infos[c]) for c in members]
        spec = "".join("l" if infos[c].kind == "key" else "r" for c in members)
        slug = "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")
        label = f"tab:{run_id}-{slug}"
        text = (f"{caption} Columns: {latex_escape(name)}. {notes}".strip() if not out else
                f"{caption} Columns: {latex_escape(name)}. Notes as in Table~\\ref{{{first_label}}}.")
        first_label = first_label or label
        out.append(part.to_latex(index=False, escape=False, column_format=spec, caption=text, label=label))
    return "\n".join(out)


def to_latex(df: pd.DataFrame, bold_best: bool = False) -> str:
    """Booktabs tables of at most 8 columns, one per metric group (see :func:`to_latex_tables`)."""
    return to_latex_tables(df, bold_best=bold_best)
