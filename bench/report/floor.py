"""The segmenter's noise floor beside mIoU vs original (see :mod:`bench.metrics.miou`).

``miou_orig_floor`` is the mIoU vs original of the original itself plus ±1 LSB noise: what
a near-lossless codec would score, since the segmenter alone changes that many labels.
It is a reference value, not a quality to optimise: no ↑/↓, no curve of its own; curves
of ``miou_orig`` draw it as a dashed horizontal line and tables print it in the column
right after ``miou_orig``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

FLOOR_SUFFIX = "_floor"
FLOOR_LABEL = "segmenter floor (original ±1 LSB)"
FLOOR_NOTE = ("mIoU vs original: segmenter floor = mIoU vs original of the original plus ±1 LSB noise, "
              "on the same images (what a near-lossless codec scores: the segmenter's own instability).")


def is_floor(key: str) -> bool:
    """True for a noise-floor value key such as ``miou_orig_floor``."""
    return key.endswith(FLOOR_SUFFIX)


def floor_column(infos: Mapping[str, Any], column: str) -> str | None:
    """The column holding the floor of ``column`` (same random-weights mark), or None."""
    key = infos[column].key
    return next((c for c, i in infos.items() if i.key == key + FLOOR_SUFFIX
                 and i.random_weights == infos[column].random_weights), None)


def floor_value(df: pd.DataFrame, column: str) -> float:
    """The floor over the table: the mean of its finite values (equal across rate points
    that hold the same images), NaN when there is none."""
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan
