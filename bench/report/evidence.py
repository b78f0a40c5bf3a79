"""Per-image evidence: which images make a codec look bad, and per-image IoU from states.

* :func:`per_image_iou` — each row's own mIoU against the ground truth and against the
  segmentation of the original, recomputed from the row's stored mIoU state (per-class
  intersections and unions of that image), so it exists for every row that has a state;
  ``iou_drop_orig`` = 1 − ``miou_orig_img`` (0: the reconstruction segments exactly like
  the original); :func:`with_image_iou` adds them to a per-image frame (export, HTML).
* :func:`worst_images` — per codec × rate, the images with the largest LPIPS, the lowest
  PSNR and the largest IoU drop against the original's segmentation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd

from bench.modes import MIoUAverage
from bench.storage.store import Row

from ..metrics.miou import REFERENCES, mean_iou
from .summary import RANDOM_MARK

#: (column, worst end, label): "max" = larger is worse.
CRITERIA: tuple[tuple[str, str, str], ...] = (
    ("lpips", "max", "largest LPIPS"),
    ("psnr", "min", "lowest PSNR [dB]"),
    ("iou_drop_orig", "max", "largest IoU drop vs seg(original)"),
)


def miou_average(run: Mapping[str, Any]) -> MIoUAverage:
    """The class averaging ("present" or "all") the run's mIoU metric recorded (its
    ``describe()`` in the run meta); "present" for runs from before the option."""
    described = ((run.get("meta") or {}).get("metrics") or {}).get("miou")
    value = str(described.get("average") or "present") if isinstance(described, Mapping) else "present"
    return cast(MIoUAverage, value)  # as recorded; mean_iou refuses an unknown one


def row_iou(row: Row, average: MIoUAverage = "present") -> dict[str, float]:
    """``miou_<ref>_img`` (in [0, 1]) for each reference the row's mIoU state holds (gt, orig,
    gt9), and ``iou_drop_orig``; {} without an mIoU state. Per image, the IoU is averaged over
    the classes present in either map of that image WHATEVER the run's averaging (``average``
    is accepted and ignored): a reconstruction that segments like the original scores 1 and
    drops 0 (see :mod:`bench.metrics.miou`)."""
    state = row.states.get("miou")
    if not state:
        return {}
    out: dict[str, float] = {}
    views = [k[len("inter_"):] for k in state if k.startswith("inter_") and k[len("inter_"):] not in REFERENCES
             and k != "inter_floor"]
    for ref in (*REFERENCES, *sorted(views)):
        if f"inter_{ref}" not in state or int(np.asarray(state.get(f"images_{ref}", 0))) == 0:
            continue
        union = np.asarray(state[f"union_{ref}"])
        value = mean_iou(np.asarray(state[f"inter_{ref}"]), union, "present") if union.any() else math.nan
        if not math.isnan(value):
            out[f"miou_{ref}_img"] = value
    if "miou_orig_img" in out:
        out["iou_drop_orig"] = 1.0 - out["miou_orig_img"]
    return out


def per_image_iou(rows: Sequence[Row], mark: str = "", average: MIoUAverage = "present") -> pd.DataFrame:
    """codec, rate, image_id and :func:`row_iou` of every row with an mIoU state (value
    columns suffixed with ``mark``, e.g. the random-weights mark; ``average``: the run's
    :func:`miou_average`)."""
    records = [{"codec": r.codec, "rate": r.rate, "image_id": r.image_id,
                **{k + mark: v for k, v in row_iou(r, average).items()}} for r in rows]
    records = [rec for rec in records if len(rec) > 3]
    return pd.DataFrame(records, columns=None if records else ["codec", "rate", "image_id"])


def with_image_iou(images: pd.DataFrame, rows: Sequence[Row], run: Mapping[str, Any]) -> pd.DataFrame:
    """``images`` (a per-image frame of ``run``) with :func:`per_image_iou`'s columns, recomputed
    from each row's mIoU state (they replace columns of the same name) and marked like the
    frame's other values of a random-weights mIoU (``images.attrs["random_metrics"]``)."""
    mark = RANDOM_MARK if "miou" in images.attrs.get("random_metrics", []) else ""
    ious = per_image_iou(rows, mark, miou_average(run))
    if ious.empty:
        return images
    keys = ["codec", "rate", "image_id"]
    attrs = dict(images.attrs)
    merged = images[[c for c in images.columns if c not in ious.columns or c in keys]].merge(ious, on=keys, how="left")
    merged.attrs = attrs
    return merged


def worst_images(images: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """Up to ``k`` worst images per codec × rate × criterion (:data:`CRITERIA`) among ok
    rows of a per-image frame (:func:`bench.report.per_image`, plus ``iou_drop_orig``).
    Columns: codec, rate, criterion, rank (1 = worst), image_id, value."""
    cols = ["codec", "rate", "criterion", "rank", "image_id", "value"]
    if images.empty:
        return pd.DataFrame(columns=cols)
    ok = images[images["status"] == "ok"] if "status" in images else images
    out = []
    for (codec, rate), g in ok.groupby(["codec", "rate"], sort=False):
        for column, end, label in CRITERIA:
            column = column if column in g else column + RANDOM_MARK
            if column not in g:
                continue
            values = pd.to_numeric(g[column], errors="coerce")
            values = values[np.isfinite(values)]
            if values.empty:
                continue
            picked = values.nlargest(k) if end == "max" else values.nsmallest(k)
            for rank, (idx, value) in enumerate(picked.items(), 1):
                out.append({"codec": codec, "rate": rate, "criterion": label, "rank": rank,
                            "image_id": g.loc[idx, "image_id"], "value": float(value)})
    return pd.DataFrame(out, columns=cols)
