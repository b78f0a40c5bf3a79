"""Number formatting shared by tables and intervals (a leaf: imports only the column metadata)."""

from __future__ import annotations

import math

import pandas as pd

from bench.report.summary import ColumnInfo


def decimals(info: ColumnInfo, values: pd.Series) -> int:
    """Decimals for a numeric column: bpp 4, dB 2, small values (< 10) 4, others 2."""
    if info.kind == "rate":
        return 4
    if info.unit == "dB":
        return 2
    finite = [abs(float(v)) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return 4 if not finite or max(finite) < 10 else 2


def images_text(n: object) -> str:
    """``"1 image"``, ``"6 images"``; ``"? images"`` when the count is not recorded."""
    return "1 image" if n == 1 else f"{n if n is not None else '?'} images"
