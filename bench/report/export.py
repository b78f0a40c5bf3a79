"""Export a run's rows as one tidy table: one row per image × codec × rate.

Columns: run_id, codec, rate, image_id, status, error, height, width, bpp (total),
bpp_paper (the paper's formula rate of codecs that declare one, NaN for others) and its
terms bpp_paper_<term>, bpp_<part> per byte part, bytes_<part> (byte counts), every
per-image metric value (random-weights ones marked ``" (random weights)"``),
error_<metric> (a metric's failure on that image) and seconds_<stage>. With
``rate="paper"``, ``bpp`` is each codec's paper rate (its real bpp when it has none),
``bpp_real`` the real bpp and ``rate_basis`` says which (see :mod:`bench.report.rates`).
With an mIoU
state, ``miou_gt_img`` / ``miou_orig_img`` (the image's own mIoU against the ground truth
and against the segmentation of the original, recomputed from the state) and
``iou_drop_orig`` = 1 − ``miou_orig_img``. Metric
*states* (the arrays behind dataset-level values such as FID) are not exported: use the
SQLite store for those.

Formats: ``csv`` (full float precision), ``json`` (a list of records; NaN/inf as null)
and ``parquet`` (needs the optional ``pyarrow`` package).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import ConfigError, UnavailableError
from bench.modes import RateBasis
from bench.report.evidence import with_image_iou
from bench.report.rates import rate_view
from bench.report.summary import load_run, per_image
from bench.storage.atomic import output_file, write_text, write_with
from bench.storage.store import Store

FORMATS = ("csv", "parquet", "json")


def tidy_rows(store: Store, run_id: str, rate: RateBasis = "real") -> pd.DataFrame:
    """The run's rows as a DataFrame (see the module docstring for the columns)."""
    loaded = load_run(store, run_id)  # the rows, read once
    run, rows = loaded
    df = per_image(store, run["run_id"], loaded)
    byte_counts = {(r.codec, r.rate, r.image_id): r.bytes for r in rows}
    parts = sorted({p for b in byte_counts.values() for p in b})
    keys = list(zip(df["codec"], df["rate"], df["image_id"]))
    for p in parts:
        df[f"bytes_{p}"] = [float(byte_counts.get(k, {}).get(p, np.nan)) for k in keys]
    # per-image IoU vs GT and vs seg(original), recomputed from each row's mIoU state
    df = with_image_iou(df, rows, run)
    df.insert(0, "run_id", run["run_id"])
    df = rate_view(df, rate)
    df.attrs = {}
    return df


def _check_parquet() -> None:
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        raise UnavailableError("parquet export needs the pyarrow package",
                               "pip install pyarrow   (or export with --format csv / json)")


def export_run(store: Store, run_id: str, path: Path | str, fmt: str | None = None, rate: RateBasis = "real") -> Path:
    """Write the tidy rows of ``run_id`` to ``path`` as ``fmt`` (default: from the suffix), atomically;
    ``rate``: "real" or "paper" (what ``bpp`` holds; both are always exported)."""
    path = output_file(path, "export file")
    fmt = (fmt or path.suffix.lstrip(".") or "csv").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"export format {fmt!r} is unknown", f"use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        _check_parquet()
    df = tidy_rows(store, run_id, rate)
    if fmt == "csv":
        write_with(path, lambda tmp: df.to_csv(tmp, index=False, float_format="%.17g"))
    elif fmt == "json":
        records = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}
                   for rec in df.astype(object).where(df.notna(), None).to_dict(orient="records")]
        import json

        write_text(path, json.dumps(records, indent=1, default=_json_default) + "\n")
    else:
        write_with(path, lambda tmp: df.to_parquet(tmp, index=False))
    return path


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def read_export(path: Path | str, fmt: str | None = None) -> pd.DataFrame:
    """Read a file written by :func:`export_run` back (rate and ids as text)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    text_cols = {"run_id": str, "codec": str, "rate": str, "image_id": str, "status": str}
    if fmt == "csv":
        return pd.read_csv(path, dtype=text_cols, keep_default_na=True)
    if fmt == "json":
        import json

        return pd.DataFrame(json.loads(path.read_text())).astype(text_cols)
    if fmt == "parquet":
        _check_parquet()
        return pd.read_parquet(path)
    raise ConfigError(f"export format {fmt!r} is unknown", f"use one of {', '.join(FORMATS)}")
