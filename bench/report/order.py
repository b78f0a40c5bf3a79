"""Numeric order of rate labels: ``5, 10, 35, 100`` (not ``10, 100, 35, 5`` as text).

Rate labels are text (``"35"``, ``"0.05"``, ``"0.4:0.4"``, ``"q=5"``); :func:`rate_key` splits
one into numbers and words so that numbers compare as numbers. :func:`sort_frame` sorts a
frame by codec, rate and whatever else is asked, with that order; every table, curve and API
frame of the report layer goes through it (the HTML report too: :func:`rate_order`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import pandas as pd

_CHUNK = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def rate_key(label: object) -> tuple[tuple[int, float, str], ...]:
    """Sort key of a rate label: numbers as floats, the text between them as text
    (``"0.4:0.4"`` -> (0.4, ":", 0.4)); numbers sort before words at the same position."""
    text = str(label)
    out: list[tuple[int, float, str]] = []
    pos = 0
    for m in _CHUNK.finditer(text):
        if m.start() > pos:
            out.append((1, 0.0, text[pos:m.start()]))
        try:
            out.append((0, float(m.group()), ""))
        except ValueError:  # pragma: no cover - the pattern only matches numbers
            out.append((1, 0.0, m.group()))
        pos = m.end()
    if pos < len(text):
        out.append((1, 0.0, text[pos:]))
    return tuple(out)


def rate_order(labels: Iterable[object]) -> list[str]:
    """The distinct rate labels in numeric order: ``["5", "10", "35", "100"]``."""
    return sorted({str(v) for v in labels}, key=rate_key)


def _rank(values: pd.Series) -> pd.Series:
    order = {v: i for i, v in enumerate(rate_order(values.dropna()))}
    return values.map(lambda v: order.get(str(v), len(order)))


def sort_frame(df: pd.DataFrame, by: Sequence[str] = ("codec", "rate")) -> pd.DataFrame:
    """``df`` sorted by the columns ``by`` that it has, the ``rate`` column in numeric order
    (:func:`rate_key`), NaN last, stable; index reset. ``attrs`` are kept."""
    cols = [c for c in by if c in df.columns]
    if df.empty or not cols:
        return df
    attrs = df.attrs
    out = df.sort_values(cols, key=lambda s: _rank(s) if s.name == "rate" else s, na_position="last",
                         kind="stable").reset_index(drop=True)
    out.attrs = attrs
    return out
