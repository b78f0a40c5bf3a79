"""Layout checks of drawn figures through matplotlib's renderer: text and legend boxes must
not overlap each other or a data marker."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.text import Text


def _texts(fig: Any) -> list[Text]:
    out: list[Text] = [t for t in fig.texts]
    for attr in ("_suptitle", "_supxlabel", "_supylabel"):
        t = getattr(fig, attr, None)
        if t is not None:
            out.append(t)
    for sub in getattr(fig, "subfigs", []):
        out += _texts(sub)
    return out


def text_boxes(fig: Figure) -> list[tuple[str, Any]]:
    """(description, display bbox) of every visible non-empty text and legend."""
    renderer = fig.canvas.get_renderer()
    items: list[Text] = _texts(fig)
    for ax in fig.axes:
        items += [ax.title, ax._left_title, ax._right_title,
                  ax.xaxis.label, ax.yaxis.label, *ax.texts]
    items = list({id(t): t for t in items}.values())  # a suptitle is also in fig.texts
    boxes = [(f"text {t.get_text()[:40]!r}", t.get_window_extent(renderer)) for t in items
             if t.get_visible() and t.get_text().strip()]
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for sub in getattr(fig, "subfigs", []):
        legends += list(sub.legends)
    boxes += [(f"legend {i}", leg.get_window_extent(renderer)) for i, leg in enumerate(legends)]
    return boxes


def marker_points(fig: Figure) -> np.ndarray:
    """Display coordinates of every drawn data marker."""
    pts = []
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_marker() in (None, "None", "", " ") or not line.get_visible():
                continue
            xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
            xy = xy[np.isfinite(xy).all(axis=1)]
            if len(xy):
                pts.append(line.get_transform().transform(xy))
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def cut_markers(fig: Figure) -> list[str]:
    """Markers (rings included) that their axes' clip box cuts: centre ± radius outside the axes."""
    problems = []
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        for line in ax.get_lines():
            if line.get_marker() in (None, "None", "", " ") or not line.get_visible() or not line.get_clip_on():
                continue
            xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
            xy = line.get_transform().transform(xy[np.isfinite(xy).all(axis=1)])
            if not len(xy):
                continue
            r = (line.get_markersize() + line.get_markeredgewidth()) / 2 * fig.dpi / 72
            cut = ((xy[:, 0] - r < box.x0 - 0.5) | (xy[:, 0] + r > box.x1 + 0.5)
                   | (xy[:, 1] - r < box.y0 - 0.5) | (xy[:, 1] + r > box.y1 + 0.5))
            if cut.any():
                problems.append(f"{int(cut.sum())} marker(s) of {line.get_label()!r} cut by the axes' edge")
    return problems


def _drawn_ticklabels(axis: Any) -> list[Text]:
    """The axis's visible tick labels at ticks inside its view limits (the others are not drawn)."""
    lo, hi = sorted(axis.get_view_interval())
    pos = 0 if axis.axis_name == "x" else 1
    return [t for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text().strip()
            and lo - 1e-12 * abs(hi - lo) <= t.get_position()[pos] <= hi + 1e-12 * abs(hi - lo)]


def overlaps(fig: Figure) -> list[str]:
    """Every pair of overlapping text/legend boxes and every marker under a text box."""
    fig.canvas.draw()
    boxes = text_boxes(fig)
    problems = [f"{a} overlaps {b}" for (a, ba), (b, bb) in combinations(boxes, 2)
                if ba.shrunk(0.98, 0.9).overlaps(bb.shrunk(0.98, 0.9))]
    points = marker_points(fig)
    for name, box in boxes:
        inside = (points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0) & (points[:, 1] < box.y1)
        if inside.any():
            problems.append(f"{name} covers {int(inside.sum())} data marker(s)")
    fw, fh = fig.bbox.width, fig.bbox.height
    out = (points[:, 0] < 0) | (points[:, 1] < 0) | (points[:, 0] > fw) | (points[:, 1] > fh)
    if out.any():
        problems.append(f"{int(out.sum())} data marker(s) outside the figure")
    renderer = fig.canvas.get_renderer()
    ticks = [t for ax in fig.axes if ax.get_visible() for axis in (ax.xaxis, ax.yaxis)
             for t in _drawn_ticklabels(axis)]
    for tick in ticks:  # a clipped tick label: "1.0" cut by the figure's edge
        box = tick.get_window_extent(renderer)
        if not (fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)):
            problems.append(f"tick label {tick.get_text()!r} is cut by the figure's edge")
    problems += cut_markers(fig)
    for name, box in boxes:
        if box.x0 < -1 or box.y0 < -1 or box.x1 > fw + 1 or box.y1 > fh + 1:
            problems.append(f"{name} is outside the figure ({box.bounds} of {fw}x{fh})")
    return problems
