"""Rate–distortion curves: one figure per metric column against bpp.

Figures are drawn on matplotlib's Agg canvas (no display needed) at one paper column
(3.5 in; ``width="double"``: 7.16 in) and saved as PNG (200 dpi), PDF (vector, Type 42
fonts) and ``.caption.txt``. The title names the run's dataset and protocol; the legend and
the caption strip (marks, rate basis, random-weights warning) sit below the axes. The
``original`` row and the segmenter floor are horizontal lines, never points.

:func:`codec_colour` / :func:`codec_marker` are the one source of a codec's colour and marker
(figures, curves and the HTML report): colour-blind-safe colours, fixed for the known codecs,
picked from a hash of the name (sha256, not Python's salted ``hash``) for the others.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.modes import REFERENCE_CODEC
from bench.storage.atomic import output_dir

from ..errors import ConfigError
from .caveats import shown_caveats
from .figstyle import (
    DEFAULT_WIDTH,
    STYLE,
    check_width,
    dagger_handle,
    draw_daggers,
    finish_layout,
    finite_mean,
    ring_handle,
)
from .floor import FLOOR_LABEL, floor_column, floor_value, is_floor
from .formatting import images_text
from .intervals import draw_interval, draw_small_n, interval_columns
from .rates import rate_note
from .render import FigureJob, content_key, render
from .summary import ColumnInfo, column_info
from .tables import fewer_images, pretty_name

PNG_DPI = 200
#: Colour-blind-safe colours: Okabe & Ito's eight (black kept for reference lines, yellow left
#: out: unreadable on white), then Paul Tol's muted set.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
TOL_MUTED = ("#332288", "#117733", "#882255", "#44AA99", "#999933", "#AA4499", "#88CCEE", "#CC6677", "#DDCC77")
PALETTE: tuple[tuple[float, float, float], ...] = tuple(to_rgb(c) for c in OKABE_ITO + TOL_MUTED)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
#: Codecs with a fixed colour and marker (all different); others get a hash-chosen pair.
KNOWN_CODECS = ("jpeg", "jpeg2000", "bpg", "webp", "avif", "jpegxl", "heic", "sqgan", "spic", "spadegan",
                "jpeg-matched", "bpg-matched", "bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor")
RANDOM_NOTE = "RANDOM WEIGHTS: smoke-test values, not a measurement."
#: The clean reference row (``REFERENCE_CODEC``) is drawn as a dashed horizontal line in this colour, never as a point.
REFERENCE_COLOUR = (0.0, 0.0, 0.0)


def _digest(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


def _slot(name: str) -> int:
    if name in KNOWN_CODECS:
        return KNOWN_CODECS.index(name)
    return len(KNOWN_CODECS) + _digest(name) % (len(PALETTE) * len(MARKERS) - len(KNOWN_CODECS))


def codec_colour(name: str) -> tuple[float, float, float]:
    """The RGB colour (0..1) of a codec, the same in every figure, run and HTML report
    (colour-blind safe; ``original`` is black: it is drawn as a reference line)."""
    if name.split("@")[0] == REFERENCE_CODEC:
        return REFERENCE_COLOUR
    return PALETTE[_slot(name) % len(PALETTE)]


def codec_marker(name: str) -> str:
    """The marker of a codec (the known codecs each have their own colour *and* marker)."""
    slot = _slot(name)
    return MARKERS[slot % len(MARKERS)] if slot < len(KNOWN_CODECS) else MARKERS[(slot // len(PALETTE)) % len(MARKERS)]


def axis_label(info: ColumnInfo) -> str:
    """``"PSNR [dB]"``, ``"LPIPS (random weights)"``."""
    return pretty_name(info) + (f" [{info.unit}]" if info.unit else "")


def short_axis_label(info: ColumnInfo) -> str:
    """The y label of a small figure: name, unit and ↑/↓, without the random-weights mark
    (the title and the caption carry it): ``"PSNR [dB] (↑ better)"``, ``"LPIPS ↓"``."""
    from dataclasses import replace

    text = axis_label(replace(info, random_weights=False))
    note = direction_note(info)
    if note and len(text) <= 16:
        return f"{text} ({note})"
    return text + (" " + note[0] if note else "")


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


def log_bpp_axis(ax: Any, few: bool = False) -> None:
    """A log bpp axis labelled 0.1, 0.2, 0.5, 1 … (``few``: 0.1, 0.3, 1 … for small panels)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 3.0) if few else (1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def figure_title(df: pd.DataFrame) -> str:
    """``"demo, 2 images, protocol card"``: the run a figure was drawn from (frame attrs)."""
    bits = [str(df.attrs.get("dataset") or "dataset ?")]
    if df.attrs.get("n_images"):
        bits.append(images_text(df.attrs["n_images"]))
    bits.append(f"protocol {df.attrs.get('protocol') or 'card'}")
    return ", ".join(bits)


def reference_level(df: pd.DataFrame, column: str) -> float:
    """The ``original`` row's value of ``column`` (NaN when absent)."""
    if "codec" not in df:
        return math.nan
    return finite_mean(df.loc[df["codec"] == REFERENCE_CODEC, column]) if column in df else math.nan


def mark_notes(df: pd.DataFrame, columns: Sequence[str], rings: bool, daggers: bool) -> list[str]:
    """Caption lines for the marks drawn: ``*`` (hollow rings), ``†``, intervals."""
    from .intervals import SMALL_N_RULES, ci_notes, small_n_notes
    from .tables import FEWER_MARK

    notes = []
    infos = column_info(df)
    whys = [SMALL_N_RULES[m][2] for m in {infos[c].metric for c in columns if c in infos} if m in SMALL_N_RULES]
    if rings:
        notes += [n + " Drawn with a hollow ring." for n in small_n_notes(df) if any(w in n for w in whys)]
    if daggers:
        notes.append(f"{FEWER_MARK} computed on fewer images than the rate point has (the metric failed on the "
                     "others; failures.csv lists them).")
    if any(interval_columns(df, c) for c in columns):
        notes += ci_notes(df, "bands / error bars: the")
    return notes


def rd_figure(df: pd.DataFrame, column: str, width: str = DEFAULT_WIDTH) -> Figure:
    """One metric against bpp: a line with markers per codec, rate points in bpp order; the
    ``original`` row and the segmenter floor as horizontal lines; legend and caption below
    the axes (``fig.caption_lines``: the caption, also written as ``.caption.txt``)."""
    infos = column_info(df)
    if column not in df.columns:
        raise ConfigError(f"no column {column!r} in the summary", f"pick one of {', '.join(curve_columns(df))}")
    info = infos[column]
    w = check_width(width)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(w, w * 0.62), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        all_bpp: list[float] = []
        rings = daggers = False
        fewer = fewer_images(df, infos, column)
        for codec, group in df.groupby("codec", sort=True):
            if str(codec) == REFERENCE_CODEC:
                continue
            data = group[["bpp", column]].astype(float)
            data = data[np.isfinite(data["bpp"]) & np.isfinite(data[column])].sort_values("bpp")
            if data.empty:
                continue
            all_bpp += data["bpp"].tolist()
            colour = codec_colour(str(codec))
            label = (df.attrs.get("codec_labels") or {}).get(str(codec), str(codec)) + _rate_suffix(df, str(codec))
            ax.plot(data["bpp"], data[column], label=label, color=colour, marker=codec_marker(str(codec)),
                    linewidth=1.2, markersize=4)
            draw_interval(ax, df, column, data.index, data["bpp"], colour)  # with --ci
            rings |= draw_small_n(ax, df, column, data.index, data["bpp"], data[column], colour)
            daggers |= draw_daggers(ax, data["bpp"], data[column], fewer.loc[data.index], colour)
        if all_bpp and min(all_bpp) > 0 and max(all_bpp) / min(all_bpp) > 10:
            log_bpp_axis(ax)
        notes: list[str] = []
        level = reference_level(df, column)
        if math.isfinite(level):  # the clean reference: a line, never a point that moves the x axis
            values = pd.to_numeric(df[column], errors="coerce").to_numpy(np.float64)
            scale = float(np.abs(values[np.isfinite(values)]).max())  # level is one of them: never empty
            ax.axhline(level, color=REFERENCE_COLOUR, linestyle="--", linewidth=0.9,
                       label=f"{REFERENCE_CODEC} (clean): {level_text(level, scale)}")
        elif REFERENCE_CODEC in set(df.get("codec", [])) and column in df:
            value = finite_or_text(df.loc[df["codec"] == REFERENCE_CODEC, column])
            notes.append(f"{REFERENCE_CODEC} (clean reference): {value}, not drawn.")
        floor = floor_column(infos, column)
        floor_level = floor_value(df, floor) if floor else math.nan
        if math.isfinite(floor_level):  # e.g. mIoU vs original: the segmenter's own noise floor
            ax.axhline(floor_level, color="0.45", linestyle=(0, (4, 2, 1, 2)), linewidth=0.9,
                       label=f"{FLOOR_LABEL}: {floor_level:.4f}")
        ax.set_xlabel(rate_axis_label(df, "rate [bpp]"))
        ax.set_ylabel(short_axis_label(info))
        ax.set_title(pretty_name(info))
        fig.suptitle(figure_title(df), fontsize=7, color="0.3")
        ax.grid(True, which="both", alpha=0.3)
        handles = ax.get_legend_handles_labels()[0]
        handles += ([ring_handle()] if rings else []) + ([dagger_handle()] if daggers else [])
        if not ax.lines:
            ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center")
        rate = rate_note(df)
        notes += mark_notes(df, [column], rings, daggers) + ([rate] if rate else [])
        notes += shown_caveats(df.attrs.get("caveats") or [], info.metric == "miou")  # an off-domain segmenter
        fig.caption_lines = finish_layout(fig, handles, notes,
                                          RANDOM_NOTE if info.random_weights else None)
    return fig


def level_text(level: float, scale: float) -> str:
    """A reference level as text (4 significant digits); rounding noise around zero
    (|level| ≤ 1e-9 × ``scale``, e.g. the FID −1.4e-14 of a set with itself) as ``0``."""
    return "0" if abs(level) <= 1e-9 * max(scale, 1e-300) else f"{level:.4g}"


def finite_or_text(values: pd.Series) -> str:
    """``"inf"`` for a lossless PSNR, else the values' mean."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    if np.isinf(v).any():
        return "inf (lossless)"
    return "no value" if not np.isfinite(v).any() else f"{float(np.nanmean(v)):.4g}"


def file_stem(column: str) -> str:
    """``"rd_lpips_random-weights"`` for ``"lpips (random weights)"``."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "-", column.replace(" (random weights)", "_random-weights")).strip("-")
    return f"rd_{slug}"


def curve_jobs(df: pd.DataFrame, out_dir: Path | str, metrics: Sequence[str] | None = None,
               width: str = DEFAULT_WIDTH) -> list[FigureJob]:
    """The figures :func:`write_curves` saves (see :func:`bench.report.render.render`)."""
    out = output_dir(out_dir, "report folder")
    infos = column_info(df)
    if metrics is None:
        columns = curve_columns(df)
    else:
        by_key = {i.key: c for c, i in infos.items()}
        columns = [m if m in df.columns else by_key.get(m, m) for m in metrics]
    check_width(width)

    def job(column: str) -> FigureJob:
        return FigureJob(out / file_stem(column), content_key("rd", column, width, df),
                         lambda: rd_figure(df, column, width),
                         lambda fig: f"{fig.axes[0].get_title()} vs rate, {figure_title(df)}.",
                         ((".png", {"dpi": PNG_DPI}), (".pdf", {})))

    return [job(c) for c in columns]


def write_curves(df: pd.DataFrame, out_dir: Path | str, metrics: Sequence[str] | None = None,
                 width: str = DEFAULT_WIDTH, workers: int | None = None) -> list[Path]:
    """Write ``rd_<column>.png`` (200 dpi), ``.pdf`` and ``.caption.txt`` per metric column;
    returns the paths (PNG and PDF). A curve whose data, options and drawing code are those it
    was last saved from is not drawn again; the others are drawn by ``workers`` processes
    (default: the free cores; see :func:`bench.report.render.render`).

    ``metrics``: column names (or keys without the random-weights mark); default every
    metric's headline values (:func:`curve_columns`, bookkeeping columns never);
    ``width``: "single" (3.5 in) or "double" (7.16 in) column.
    """
    return render(curve_jobs(df, out_dir, metrics, width), workers)
