"""Reports from the run store: summary tables (Markdown, CSV, LaTeX), rate–distortion
curves (PNG, PDF) and a console table.

    df = summarise(store, run_id)            # one row per codec × rate point
    paths = write_report(store, run_id, out)  # everything, into ``out``
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..store import Store
from .curves import codec_colour, codec_marker, rd_figure, write_curves
from .summary import (
    RANDOM_MARK,
    ColumnInfo,
    column_info,
    failures,
    per_image,
    summarise,
)
from .tables import render_console, to_latex, to_markdown, write_tables


def write_report(store: Store, run_id: str, out_dir: Path | str, summary: pd.DataFrame | None = None) -> list[Path]:
    """Write summary.{md,csv,tex}, per_image.csv, rd_<metric>.{png,pdf} and, when any
    row failed, failures.csv into ``out_dir``; returns the written paths.
    ``summary``: :func:`summarise` of the run, when the caller already has it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = summary if summary is not None else summarise(store, run_id)
    paths = write_tables(df, out)
    paths += write_curves(df, out)
    images = per_image(store, run_id)
    images.to_csv(out / "per_image.csv", index=False)
    paths.append(out / "per_image.csv")
    failed = failures(store, run_id)
    if len(failed):
        failed.to_csv(out / "failures.csv", index=False)
        paths.append(out / "failures.csv")
    return paths


__all__ = [
    "RANDOM_MARK", "ColumnInfo", "codec_colour", "codec_marker", "column_info", "failures", "per_image",
    "rd_figure", "render_console", "summarise", "to_latex", "to_markdown", "write_curves", "write_report",
    "write_tables",
]
