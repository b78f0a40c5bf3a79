"""Per-class IoU of every rate point in the HTML report, as HTML bars (no image).

For each reference (``gt``: the ground truth, ``orig``: the segmentation of the original)
a ``<select>`` lists the rate points of the run; choosing one shows a table with one row per
class and one bar per codec at its rate point nearest that bpp (the codec's colour from
:func:`bench.report.curves.codec_colour`, the same as in every figure). The legend is the
table's header, so nothing covers a bar. IoU is in [0, 1]; "–" where a class was absent.
The view nearest the chosen bpp is HTML; the others are built from a compact JSON block by a
few lines of script when selected (26 rate points × 171 COCO classes × 6 codecs stay ~0.2 MB).
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

import numpy as np
import pandas as pd

from .curves import codec_colour
from .summary import column_info

CSS = """
table.iou td.bar{min-width:160px;text-align:left;padding:.15em .3em}
table.iou .b{display:inline-block;height:.8em;vertical-align:middle;margin-right:.3em}
table.iou .v{font-size:.8em;color:#444}
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:middle}
"""

SCRIPT = """
document.querySelectorAll('select.iou-select').forEach(function (sel) {
  var data = JSON.parse(document.getElementById(sel.dataset.group + '-data').textContent);
  var box = document.getElementById(sel.dataset.group);
  function esc(s) { var d = document.createElement('span'); d.textContent = s; return d.innerHTML; }
  sel.addEventListener('change', function () {
    var v = data.views[+sel.value], h = '<table class=iou><thead><tr><th>class</th>';
    v.heads.forEach(function (x, j) {
      h += '<th><span class=swatch style="background:' + v.colours[j] + '"></span>' + esc(x) + '</th>'; });
    h += '</tr></thead><tbody>';
    data.classes.forEach(function (c, i) {
      h += '<tr><td class=key>' + esc(c) + '</td>';
      v.values[i].forEach(function (x, j) {
        h += x === null ? '<td class=bar><span class=v>–</span></td>' : '<td class=bar><span class=b style="width:'
          + Math.round(Math.max(0, Math.min(1, x)) * 120) + 'px;background:' + v.colours[j]
          + '"></span><span class=v>' + x.toFixed(3) + '</span></td>'; });
      h += '</tr>'; });
    box.innerHTML = h + '</tbody></table>';
  });
});
"""


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{int(round(255 * c)):02x}" for c in rgb[:3])


def _nearest(df: pd.DataFrame, codec: str, bpp: float) -> pd.Series | None:
    g = df[(df["codec"] == codec) & np.isfinite(pd.to_numeric(df["bpp"], errors="coerce"))]
    if g.empty or not math.isfinite(bpp):
        return None
    return g.loc[(g["bpp"] - bpp).abs().idxmin()]


def _targets(df: pd.DataFrame) -> list[float]:
    """The bpp values offered: every rate point of the codec with the most of them,
    lowest first (each other codec shows its nearest point)."""
    bpp = pd.to_numeric(df["bpp"], errors="coerce")
    ok = df[np.isfinite(bpp)]
    if ok.empty:
        return []
    main = ok.groupby("codec", sort=False).size().idxmax()
    return sorted(float(v) for v in ok.loc[ok["codec"] == main, "bpp"])


def _picked(df: pd.DataFrame, codecs: list[str], target: float) -> list[tuple[str, pd.Series]]:
    picked = [(c, _nearest(df, c, target)) for c in codecs]
    return [(c, r) for c, r in picked if r is not None]


def _head(codec: str, row: pd.Series, labels: dict[str, str]) -> str:
    return f'{labels.get(codec, codec)} @ {row["rate"]} ({float(row["bpp"]):.3f} bpp)'


def _value(row: pd.Series, col: str) -> float | None:
    value = float(row[col]) if pd.notna(row[col]) else math.nan
    return round(value, 4) if math.isfinite(value) else None


def _view(picked: list[tuple[str, pd.Series]], cols: list[str], classes: list[str], labels: dict[str, str]) -> str:
    heads = "".join(f'<th><span class=swatch style="background:{_hex(codec_colour(c))}"></span>'
                    f"{_esc(_head(c, r, labels))}</th>" for c, r in picked)
    body = []
    for col, name in zip(cols, classes):
        cells = []
        for codec, row in picked:
            value = _value(row, col)
            if value is None:
                cells.append("<td class=bar><span class=v>–</span></td>")
                continue
            width = max(0.0, min(1.0, value)) * 120
            cells.append(f'<td class=bar><span class=b style="width:{width:.0f}px;background:'
                         f'{_hex(codec_colour(codec))}"></span><span class=v>{value:.3f}</span></td>')
        body.append(f"<tr><td class=key>{_esc(name)}</td>{''.join(cells)}</tr>")
    return f'<table class=iou><thead><tr><th>class</th>{heads}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def iou_html(df: pd.DataFrame, group: str, default_bpp: float) -> str:
    """The selector and per-rate-point views for the ``iou_<ref>/<class>`` columns of a
    summary; "" when it has none. ``group``: a page-unique id; ``default_bpp``: the view
    selected first (the rate point nearest it)."""
    infos = column_info(df)
    labels = df.attrs.get("codec_labels") or {}
    codecs = list(dict.fromkeys(df["codec"]))
    targets = _targets(df)
    if not targets:
        return ""
    first = int(np.argmin([abs(t - default_bpp) for t in targets])) if math.isfinite(default_bpp) else 0
    out = []
    for ref, title in (("gt", "ground truth"), ("orig", "segmentation of the original")):
        cols = [c for c, i in infos.items() if i.key.startswith(f"iou_{ref}/")]
        if not cols:
            continue
        classes = [infos[c].key.split("/", 1)[1] for c in cols]
        gid = f"{group}-{ref}"
        views = []
        for t in targets:
            picked = _picked(df, codecs, t)
            views.append({"heads": [_head(c, r, labels) for c, r in picked],
                          "colours": [_hex(codec_colour(c)) for c, _r in picked],
                          "values": [[_value(r, col) for _c, r in picked] for col in cols]})
        data = json.dumps({"classes": classes, "views": views}, separators=(",", ":")).replace("</", "<\\/")
        options = "".join(f'<option value="{k}"{" selected" if k == first else ""}>≈ {t:.4f} bpp</option>'
                          for k, t in enumerate(targets))
        out.append(f"<h4>per-class IoU vs {title}</h4><p><label>rate point: <select class=iou-select "
                   f'data-group="{gid}" aria-label="per-class IoU vs {ref}: rate point">{options}</select></label> '
                   "(each codec at its rate point nearest the chosen bpp; IoU 0–1 ↑)</p>"
                   f'<div class="iou-views" id="{gid}">{_view(_picked(df, codecs, targets[first]), cols, classes, labels)}'
                   f'</div><script type="application/json" id="{gid}-data">{data}</script>')
    return "".join(out)
