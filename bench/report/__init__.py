"""Reports from the run store: summary tables (Markdown, CSV, LaTeX), rate–distortion
curves (PNG, PDF) and a console table.

    df = summarise(store, run_id)            # one row per codec × rate point
    paths = write_report(store, run_id, out)  # everything, into ``out``
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.modes import RateBasis
from bench.storage.atomic import output_dir, remove_stale, write_with
from bench.storage.store import Store

from .console import render_console
from .latex import to_latex
from .rates import RATES, rate_view
from .summary import (
    RANDOM_MARK,
    ColumnInfo,
    Loaded,
    column_info,
    failures,
    load_run,
    per_image,
    summarise,
)
from .table_files import write_tables
from .tables import to_markdown


def write_report(store: Store, run_id: str, out_dir: Path | str, summary: pd.DataFrame | None = None,
                 loaded: Loaded | None = None, rate: RateBasis = "real", bold_best: bool = False,
                 width: str = "single") -> list[Path]:
    """Write summary.{md,csv,tex}, per_image.csv, rd_<metric>.{png,pdf} and, when any
    row failed, failures.csv into ``out_dir`` (each file atomically; a failures.csv left by an
    earlier report is removed once no row fails); returns the written paths. The rows are read
    once (``loaded``: :func:`load_run` of the run, when the caller already has it;
    ``summary``: its :func:`summarise`). Metric failures on ok rows are listed there too.
    ``rate``: "real" (bpp of the transmitted bytes) or "paper" (each codec's paper formula rate
    where it has one, see :func:`rate_view`) for the tables' bpp and the curves' x axis;
    per_image.csv has both. ``bold_best``: summary.tex sets the best value per rate point in bold.
    ``width``: the curves', "single" (3.5 in) or "double" (7.16 in) column. Curves are drawn by
    other processes while the tables are written, and not again when their content is unchanged
    (:mod:`bench.report.render`)."""
    from .curves import curve_jobs  # matplotlib: imported by what draws, not by what reads tables
    from .render import start

    out = output_dir(out_dir, "report folder")
    loaded = loaded or load_run(store, run_id)
    df = rate_view(summary if summary is not None else summarise(store, run_id, loaded), rate)
    curves = start(curve_jobs(df, out, width=width))  # drawn by other processes while the tables are written
    paths = write_tables(df, out, bold_best=bold_best)
    images = per_image(store, run_id, loaded)
    paths.append(write_with(out / "per_image.csv", lambda tmp: images.to_csv(tmp, index=False)))
    failed = failures(store, run_id, loaded)
    if len(failed):
        paths.append(write_with(out / "failures.csv", lambda tmp: failed.to_csv(tmp, index=False)))
    else:
        remove_stale(out / "failures.csv")
    return paths + curves.wait()


_CURVES = ("codec_colour", "codec_marker", "rd_figure", "write_curves")


def __getattr__(name: str) -> object:
    """The curve functions, imported on first use (they need matplotlib; tables and compare do not)."""
    if name in _CURVES:
        from . import curves

        return getattr(curves, name)
    raise AttributeError(f"module 'bench.report' has no attribute {name!r}")


__all__ = [
    "RANDOM_MARK", "RATES", "ColumnInfo", "rate_view",
    "Loaded", "codec_colour", "codec_marker", "column_info", "failures", "load_run", "per_image",
    "rd_figure", "render_console", "summarise", "to_latex", "to_markdown", "write_curves", "write_report",
    "write_tables",
]
