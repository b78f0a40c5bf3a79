"""Rate–distortion curves: one figure per metric column against bpp.

Figures are drawn on matplotlib's Agg canvas (no display needed) and saved as PNG
(200 dpi) and PDF (vector). Each codec gets the same colour and marker in every figure:
both are picked from a hash of its name (sha256, not Python's salted ``hash``).
"""

from __future__ import annotations

import hashlib
import math
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.storage.atomic import output_dir, write_with
from ..errors import ConfigError
from .floor import FLOOR_LABEL, floor_column, floor_value, is_floor
from .intervals import draw_interval, draw_small_n, figure_note
from .summary import ColumnInfo, column_info
from .tables import pretty_name

PNG_DPI = 200
# 18 qualitative colours (tab10 then Dark2) and 8 markers: 144 colour × marker pairs.
PALETTE: tuple[tuple[float, ...], ...] = tuple(colormaps["tab10"].colors) + tuple(colormaps["Dark2"].colors)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
RANDOM_NOTE = "RANDOM WEIGHTS: smoke-test values, not a measurement"


def _digest(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


def codec_colour(name: str) -> tuple[float, float, float]:
    """The RGB colour (0..1) of a codec, the same in every figure and every run."""
    r, g, b = PALETTE[_digest(name) % len(PALETTE)][:3]
    return float(r), float(g), float(b)


def codec_marker(name: str) -> str:
    """The marker of a codec (chosen independently of the colour to split colour clashes)."""
    return MARKERS[(_digest(name) // len(PALETTE)) % len(MARKERS)]


def axis_label(info: ColumnInfo) -> str:
    """``"PSNR [dB]"``, ``"LPIPS (random weights)"``."""
    return pretty_name(info) + (f" [{info.unit}]" if info.unit else "")


def direction_note(info: ColumnInfo) -> str:
    if info.higher_is_better is None:
        return ""
    return "↑ better" if info.higher_is_better else "↓ better"


def rate_axis_label(df: pd.DataFrame, base: str = "bpp") -> str:
    """The x-axis label: ``base``, or ``base`` + ", paper formula" for a paper-rate view
    (:func:`bench.report.rates.rate_view`) where some codec has one."""
    from .rates import paper_codecs_of

    if df.attrs.get("rate") == "paper" and paper_codecs_of(df):
        return base.replace("]", ", paper formula rate]") if base.endswith("]") else base + " (paper formula rate)"
    return base


def _rate_suffix(df: pd.DataFrame, codec: str) -> str:
    """" (real bpp)" for a codec drawn at its real bpp in a paper-rate view with paper codecs."""
    from .rates import paper_codecs_of

    if df.attrs.get("rate") == "paper" and codec in (df.attrs.get("real_rate_codecs") or []) and paper_codecs_of(df):
        return " (real bpp)"
    return ""


def curve_columns(df: pd.DataFrame) -> list[str]:
    """Default curve columns: each metric's dataset-level values (detail columns such as
    sample counts and per-class values left out); per-image means of a metric only when
    that metric has no dataset-level value. Noise floors are drawn in their metric's curve."""
    infos = column_info(df)
    with_dataset = {i.metric for i in infos.values() if i.kind == "dataset" and not i.detail}
    return [c for c, i in infos.items() if not i.detail and i.metric and not is_floor(i.key)
            and (i.kind == "dataset" or (i.kind == "mean" and i.metric not in with_dataset))]


def rd_figure(df: pd.DataFrame, column: str) -> Figure:
    """One metric against bpp: a line with markers per codec, rate points in bpp order."""
    infos = column_info(df)
    if column not in df.columns:
        raise ConfigError(f"no column {column!r} in the summary", f"pick one of {', '.join(curve_columns(df))}")
    info = infos[column]
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    all_bpp: list[float] = []
    for codec, group in df.groupby("codec", sort=True):
        data = group[["bpp", column]].astype(float)
        data = data[np.isfinite(data["bpp"]) & np.isfinite(data[column])].sort_values("bpp")
        if data.empty:
            continue
        all_bpp += data["bpp"].tolist()
        label = (df.attrs.get("codec_labels") or {}).get(str(codec), str(codec)) + _rate_suffix(df, str(codec))
        ax.plot(data["bpp"], data[column], label=label, color=codec_colour(str(codec)),
                marker=codec_marker(str(codec)), linewidth=1.5, markersize=5)
        draw_interval(ax, df, column, data.index, data["bpp"], codec_colour(str(codec)))  # with --ci
        draw_small_n(ax, df, column, data.index, data["bpp"], data[column], codec_colour(str(codec)))
    if all_bpp and min(all_bpp) > 0 and max(all_bpp) / min(all_bpp) > 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    floor = floor_column(infos, column)
    level = floor_value(df, floor) if floor else math.nan
    if math.isfinite(level):  # e.g. mIoU vs original: the segmenter's own noise floor
        ax.axhline(level, color="0.35", linestyle="--", linewidth=1.0, label=f"{FLOOR_LABEL}: {level:.4f}")
    ax.set_xlabel(rate_axis_label(df, "rate [bpp]"))
    note = direction_note(info)
    ax.set_ylabel(axis_label(info) + (f" ({note})" if note else ""))
    ax.set_title(f"{pretty_name(info)} vs rate" + (f" — {note}" if note else ""))
    ax.grid(True, which="both", alpha=0.3)
    figure_note(ax, df, column)
    if ax.lines:
        ax.legend(fontsize="small", loc="best")
    else:
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center")
    caveats = df.attrs.get("caveats") or []  # bench.report.caveats (off-domain segmenter)
    if caveats and info.metric == "miou":
        fig.suptitle(textwrap.fill("; ".join(caveats), 90), fontsize="x-small", color="darkred")
    if info.random_weights:
        ax.text(0.5, 0.02, RANDOM_NOTE, transform=ax.transAxes, ha="center", va="bottom",
                color="red", fontsize="small", weight="bold",
                bbox={"facecolor": "white", "edgecolor": "red", "alpha": 0.8})
    return fig


def file_stem(column: str) -> str:
    """``"rd_lpips_random-weights"`` for ``"lpips (random weights)"``."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "-", column.replace(" (random weights)", "_random-weights")).strip("-")
    return f"rd_{slug}"


def write_curves(df: pd.DataFrame, out_dir: Path | str, metrics: Sequence[str] | None = None) -> list[Path]:
    """Write ``rd_<column>.png`` (200 dpi) and ``.pdf`` per metric column; returns the paths.

    ``metrics``: column names (or keys without the random-weights mark); default all
    metric columns.
    """
    out = output_dir(out_dir, "report folder")
    infos = column_info(df)
    if metrics is None:
        columns = curve_columns(df)
    else:
        by_key = {i.key: c for c, i in infos.items()}
        columns = [m if m in df.columns else by_key.get(m, m) for m in metrics]
    paths: list[Path] = []
    for column in columns:
        fig = rd_figure(df, column)
        stem = out / file_stem(column)
        for suffix, kwargs in ((".png", {"dpi": PNG_DPI}), (".pdf", {})):
            paths.append(write_with(stem.with_suffix(suffix), lambda tmp: fig.savefig(tmp, **kwargs)))
    return paths
