"""Summary tables: Markdown, CSV and LaTeX (booktabs) files, and a compact console table.

CSV keeps full precision and the plain column names (a random-weights metric keeps its
``"(random weights)"`` mark). Markdown and LaTeX use readable labels with units and the
direction of each metric (↑ / ↓ better), and round numbers per column: bpp 4 decimals,
dB 2 decimals, values under 10 (MS-SSIM, LPIPS, mIoU) 4 decimals, larger ones 2.

A metric's value computed on fewer images than its rate point has (``n_<metric>`` <
``n_ok``: the metric failed on some) is marked with ``†`` and its ``n_<metric>`` column is
printed; ``n identical`` (identical reconstructions) is printed whenever PSNR was measured.
When a codec declares a paper formula rate, ``bpp_paper`` is printed beside the real bpp.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from .attrs import visible
from .floor import FLOOR_NOTE, is_floor
from .formatting import decimals
from .intervals import ci_notes, decorate, small_n_notes
from .rates import rate_note
from .summary import RANDOM_MARK, ColumnInfo, column_info

FEWER_MARK = "†"  # computed on fewer images than the rate point has (a metric failed on some)
LATEX_FEWER_MARK = r"$^\dagger$"

#: Names of the columns no metric owns; a metric's own keys are named by its card's ``labels``.
PRETTY: dict[str, str] = {
    "codec": "codec", "rate": "rate", "n_ok": "n ok", "n_failed": "n failed", "bpp": "bpp", "dists": "DISTS",
    "n_identical": "n identical", "rate_basis": "rate basis",
}


def _pretty() -> dict[str, str]:
    """:data:`PRETTY` plus the ``labels`` of every metric card."""
    from bench.registry.catalog import card_maps

    return {**PRETTY, **card_maps("metric", "labels")}

ARROWS = {True: "↑", False: "↓"}
LATEX_ARROWS = {True: r"$\uparrow$", False: r"$\downarrow$"}
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def pretty_name(info: ColumnInfo) -> str:
    """Readable name without unit: ``"MS-SSIM"``, ``"bpp (image)"``, ``"LPIPS (random weights)"``."""
    if info.label:
        base = info.label
    elif info.kind == "count" and info.metric and info.key == f"n_{info.metric}":
        base = f"n {_pretty().get(info.metric, info.metric)}"
    elif info.kind == "rate" and info.key.startswith("bpp_"):
        base = f"bpp ({info.key[4:]})"
    else:
        base = _pretty().get(info.key, info.key)
    return base + RANDOM_MARK if info.random_weights else base


def header(info: ColumnInfo, arrows: dict[bool, str] = ARROWS) -> str:
    """Column header with unit and direction: ``"PSNR [dB] ↑"``."""
    text = pretty_name(info)
    if info.unit and info.kind != "rate":
        text += f" [{info.unit}]"
    if info.kind in ("dataset", "mean") and info.higher_is_better is not None:
        text += " " + arrows[info.higher_is_better]
    return text


def _formatter(info: ColumnInfo, values: pd.Series, nan: str, inf: str) -> Callable[[Any], str]:
    if info.kind == "key":
        return str
    if info.kind == "count":
        return lambda v: str(int(v)) if not pd.isna(v) else nan
    places = decimals(info, values)

    def fmt(v: Any) -> str:
        if v is None or pd.isna(v):
            return nan
        x = float(v)
        if math.isinf(x):
            return inf if x > 0 else "-" + inf
        text = f"{x:.{places}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text  # -1e-14 prints 0.0000, not -0.0000

    return fmt


def is_metric_n(info: ColumnInfo) -> bool:
    """True for ``n_<metric>``: the images a metric was computed on."""
    return info.kind == "count" and bool(info.metric) and info.key == f"n_{info.metric}"


def fewer_images(df: pd.DataFrame, infos: dict[str, ColumnInfo], column: str) -> pd.Series:
    """Per row: the column's metric was computed on fewer images than ``n_ok``."""
    info = infos[column]
    n_col = f"n_{info.metric}" if info.metric and info.kind in ("dataset", "mean") else None
    if n_col is None or n_col not in df.columns or "n_ok" not in df.columns:
        return pd.Series(False, index=df.index)
    return pd.to_numeric(df[n_col], errors="coerce") < pd.to_numeric(df["n_ok"], errors="coerce")


def formatted(df: pd.DataFrame, *, nan: str = "–", inf: str = "inf",
              infos: dict[str, ColumnInfo] | None = None, full: pd.DataFrame | None = None,
              mark: str = FEWER_MARK) -> tuple[pd.DataFrame, dict[str, ColumnInfo]]:
    """A copy of ``df`` with every cell as a rounded string, and the column metadata.
    Values computed on fewer images than the rate point's ``n_ok`` get ``mark`` (``full``:
    the frame holding the ``n_*`` columns, when ``df`` is a selection of its columns)."""
    infos = infos if infos is not None else column_info(df)
    full = full if full is not None else df
    out = pd.DataFrame({c: [_formatter(infos[c], df[c], nan, inf)(v) for v in df[c]] for c in df.columns},
                       index=df.index)
    full_infos = {**column_info(full), **infos}
    for c in df.columns:
        fewer = fewer_images(full, full_infos, c) if c in full.columns else None
        if fewer is not None and fewer.any():
            out[c] = [v + mark if f and v != nan else v for v, f in zip(out[c], fewer)]
    labels = df.attrs.get("codec_labels") or {}
    if labels and "codec" in out:  # e.g. "SPIC (BPG stand-in: heic)" instead of "spic"
        out["codec"] = [labels.get(v, v) for v in out["codec"]]
    return out, infos


def _align(infos: dict[str, ColumnInfo], columns: list[str]) -> list[str]:
    return ["left" if infos[c].kind == "key" else "right" for c in columns]


def printed_columns(df: pd.DataFrame, infos: dict[str, ColumnInfo] | None = None) -> list[str]:
    """Columns of the printed tables: all but the detail ones (those stay in the CSV) and
    the ``n_<metric>`` counts that equal ``n_ok`` on every row."""
    infos = infos if infos is not None else column_info(df)
    return [c for c in df.columns if not infos[c].detail
            and not (is_metric_n(infos[c]) and "n_ok" in df and not _differs(df[c], df["n_ok"]))]


def _differs(a: pd.Series, b: pd.Series) -> bool:
    return bool((pd.to_numeric(a, errors="coerce") != pd.to_numeric(b, errors="coerce")).any())


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table with units and ↑/↓ in the headers."""
    infos = column_info(df)
    cols = printed_columns(df, infos)
    cells, _ = formatted(df[cols], infos=infos, full=df)
    cells = decorate(df, cells, infos)  # value ± half-width, small-N marks
    cells.columns = [md_cell(header(infos[c])) for c in cols]
    cells = cells.map(lambda v: md_cell(v) if isinstance(v, str) else v)
    table = cells.to_markdown(index=False, disable_numparse=True, colalign=_align(infos, cols))
    notes = _notes(df)
    return table + ("\n\n" + "\n".join(f"> {md_cell(n)}" for n in notes) if notes else "") + "\n"


def md_cell(text: str) -> str:
    """Text safe in one Markdown table cell: ``|`` escaped, line breaks as spaces, other control
    characters (an ANSI escape in a tag) as visible ``\\xNN``."""
    return visible(text).replace("|", "\\|")


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)



def _notes(df: pd.DataFrame) -> list[str]:
    infos = column_info(df)
    notes = []
    if any(i.random_weights for i in infos.values()):
        notes.append("Columns marked (random weights) come from networks with random weights: "
                     "smoke-test numbers, not measurements.")
    if any(is_floor(i.key) for i in infos.values()):
        notes.append(FLOOR_NOTE)
    note = rate_note(df)
    if note:
        notes.append(note)
    if any(fewer_images(df, infos, c).any() for c in df.columns):
        notes.append(f"{FEWER_MARK} computed on fewer images than the rate point has (n ok): the metric failed on "
                     "the others (n_<metric> columns; failures.csv lists each failure).")
    if "n_identical" in df.columns and bool((pd.to_numeric(df["n_identical"], errors="coerce") > 0).any()):
        notes.append("n identical: reconstructions equal to the original; PSNR (and the per-image mean of "
                     "MS-SSIM in dB) average the other images, PSNR of mean MSE and MS-SSIM [dB] include them.")
    n_detail = sum(i.detail for i in infos.values())
    if n_detail:
        notes.append(f"{n_detail} more columns (sample counts, per-class values) are in the CSV.")
    notes += small_n_notes(df, infos) + ci_notes(df)
    notes += [f"Warning: {w}" for w in df.attrs.get("warnings", [])]
    notes += [f"Caveat: {c}" for c in df.attrs.get("caveats", [])]  # bench.report.caveats
    if df.attrs.get("run_id"):
        notes.append(f"Run {df.attrs['run_id']}.")
    return notes
