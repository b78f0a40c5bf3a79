"""What every figure shares: paper sizes, fonts, the caption strip, legends outside the data.

* Sizes: ``single`` (3.5 in, one column of a two-column paper) and ``double`` (7.16 in, the
  full text width); :data:`WIDTHS`. Figures are drawn at their size (no tight-bbox crop), so
  the PDF is exactly that wide.
* Fonts: 8 pt text, 7 pt ticks; PDF and PS fonts embedded as TrueType (Type 42).
* Legends sit outside the axes, below them (``fig.legend(loc="outside lower center")`` under
  constrained layout), never over data or text.
* The caption strip is the text under the legend: notes on marks (``*``, ``†``), the rate
  basis, the protocol and, in red, the random-weights warning. It is also returned as text so
  callers write it next to the figure as ``<figure>.caption.txt`` for the paper's LaTeX.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.transforms import ScaledTranslation

from bench.errors import ConfigError
from bench.storage.atomic import write_text

WIDTHS: dict[str, float] = {"single": 3.5, "double": 7.16}
DEFAULT_WIDTH = "single"
STYLE: dict[str, Any] = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "lines.linewidth": 1.2, "lines.markersize": 4, "pdf.fonttype": 42, "ps.fonttype": 42,
    "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 200,
    "axes.xmargin": 0.08, "axes.ymargin": 0.1,  # a ring (9 pt) at the last point stays inside its axes
}
CAPTION_SIZE = 6.0
NO_LIGATURES = ("-liga", "-clig")  # HarfBuzz features: "fi" stays two glyphs (one font subset per PDF)
RING_SIZE = 9.0
DAGGER = r"$\dagger$"
RANDOM_WARNING = "RANDOM WEIGHTS: values marked (random weights) are smoke-test numbers, not measurements."
RING_LABEL = "ring: * value from too few samples"
DAGGER_LABEL = "†: fewer images than the rate point"


def check_width(width: str) -> float:
    """Inches of a ``single`` or ``double`` column figure."""
    if width not in WIDTHS:
        raise ConfigError(f"figure width {width!r} is unknown", "use --width single (3.5 in) or double (7.16 in)")
    return WIDTHS[width]


def ring_handle() -> Line2D:
    return Line2D([], [], linestyle="none", marker="o", markersize=RING_SIZE * 0.8, markerfacecolor="none",
                  markeredgecolor="0.3", label=RING_LABEL)


def dagger_handle() -> Line2D:
    return Line2D([], [], linestyle="none", marker=DAGGER, markersize=6, color="0.2", label=DAGGER_LABEL)


def draw_daggers(ax: Any, x: Any, y: Any, flags: Any, colour: Any) -> bool:
    """``†`` markers up-right of the flagged points (values from fewer images than the rate
    point has); True when any was drawn."""
    flags = np.asarray(flags, bool)
    if not flags.any():
        return False
    offset = ScaledTranslation(5 / 72, 5 / 72, ax.figure.dpi_scale_trans)
    ax.plot(np.asarray(x, float)[flags], np.asarray(y, float)[flags], linestyle="none", marker=DAGGER,
            markersize=6, color=colour, transform=ax.transData + offset, label="_dagger")
    return True


def legend_columns(labels: Sequence[str], width_in: float, fontsize: float = 7.0) -> int:
    """Columns of a legend of ``labels`` that fits ``width_in`` inches."""
    if not labels:
        return 1
    longest = max(len(s) for s in labels) * fontsize * 0.55 / 72 + 0.45  # text + handle and gaps
    return int(max(1, min(len(labels), width_in // longest)))


def _wrap(lines: Sequence[str], chars: int) -> str:
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) for line in lines if line)


def _caption_texts(fig: Figure, blocks: list[tuple[str, str]], chars: int) -> tuple[list[Any], float]:
    """Caption blocks stacked from the bottom (inches); returns the texts and the top."""
    renderer = fig.canvas.get_renderer()
    texts, y = [], 0.04
    for block, colour in reversed(blocks):
        # one Text a line: matplotlib 3.11 shapes a multi-line text with ligatures whatever its features
        for line in reversed(_wrap([block], chars).split("\n")):
            t = fig.text(0.05, y, line, transform=fig.dpi_scale_trans, fontsize=CAPTION_SIZE,
                         color=colour, ha="left", va="bottom")
            y += t.get_window_extent(renderer).height / fig.dpi
            texts.append(t)
        y += 0.03
    return texts, y


def _worded_texts(fig: Figure) -> list[Text]:
    """The figure's texts but tick labels (numbers), found without ``findobj``, whose walk
    through the axes makes every tick (0.3 s a figure)."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [c for c in ax.get_children() if isinstance(c, Text)] + [ax.xaxis.label, ax.yaxis.label]
    for leg in legends:
        if leg is not None:
            texts += [*leg.get_texts(), leg.get_title()]
    return texts


def finish_layout(fig: Figure, handles: Sequence[Any], notes: Sequence[str], warning: str | None = None) -> list[str]:
    """Put the legend (``handles``) and the caption strip (``notes``; ``warning`` first, in
    red) under the axes: the figure grows by their height and constrained layout keeps every
    axes above them, so neither covers data or text. Returns the caption lines."""
    lines = ([warning] if warning else []) + [n for n in notes if n]
    # the warning in red, not bold: a bold face is a second font subset in the PDF (~0.25 s a file)
    blocks = ([(warning, "#b2182b")] if warning else []) + [(n, "0.25") for n in notes if n]
    width_in = fig.get_figwidth()
    renderer = fig.canvas.get_renderer()
    chars = int((width_in - 0.1) * 72 / (CAPTION_SIZE * 0.5))
    texts, top = _caption_texts(fig, blocks, chars)
    room = 0.95 * width_in - 0.1  # hinted glyphs are a little wider at other resolutions
    while texts and max(t.get_window_extent(renderer).width for t in texts) / fig.dpi > room and chars > 30:
        widest = max(t.get_window_extent(renderer).width for t in texts) / fig.dpi
        for t in texts:
            t.remove()
        chars = int(chars * room / widest) - 1
        texts, top = _caption_texts(fig, blocks, chars)
    bottom = top + (0.02 if texts else 0.0)
    if handles:
        labels = [h.get_label() for h in handles]
        ncol = min(len(labels), 4)
        while True:
            leg = fig.legend(list(handles), labels, loc="lower center", ncol=ncol, frameon=False, handlelength=1.6,
                             columnspacing=1.0, borderaxespad=0.0, borderpad=0.2,
                             bbox_to_anchor=(width_in / 2, bottom), bbox_transform=fig.dpi_scale_trans)
            if leg.get_window_extent(renderer).width / fig.dpi <= 0.97 * width_in - 0.05 or ncol == 1:
                break
            leg.remove()
            ncol -= 1
        bottom += leg.get_window_extent(renderer).height / fig.dpi + 0.04
    for text in _worded_texts(fig):  # a ligature ("fi") is a glyph without a character: a second font subset
        text.set_fontfeatures(NO_LIGATURES)  # in the PDF, ~0.2 s of Type 42 subsetting per file
    w, h = fig.get_size_inches()
    fig.set_size_inches(w, h + bottom)
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.set(rect=(0, bottom / (h + bottom), 1, 1 - bottom / (h + bottom)))
    return lines


def write_caption(stem: Path, lines: Sequence[str], title: str = "") -> Path:
    """``<stem>.caption.txt``: the figure's title and caption lines, one paragraph."""
    text = " ".join(s.strip() for s in ([title] if title else []) + list(lines) if s.strip())
    return write_text(stem.with_name(stem.name + ".caption.txt"), text + "\n")


def finite_mean(values: pd.Series) -> float:
    v = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")
