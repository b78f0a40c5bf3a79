"""The summary tables as files: ``<stem>.md``, ``<stem>.csv`` (full precision) and ``<stem>.tex``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.latex import to_latex
from bench.report.tables import to_markdown
from bench.storage.atomic import output_dir, write_text, write_with


def write_tables(df: pd.DataFrame, out_dir: Path | str, stem: str = "summary", bold_best: bool = False) -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` (full precision) and ``<stem>.tex`` (booktabs tables of
    at most 8 columns; ``bold_best``: the best value per rate point in bold), each atomically;
    returns the paths."""
    out = output_dir(out_dir, "report folder")
    paths = [out / f"{stem}.md", out / f"{stem}.csv", out / f"{stem}.tex"]
    write_text(paths[0], to_markdown(df))
    write_with(paths[1], lambda tmp: df.to_csv(tmp, index=False))
    write_text(paths[2], to_latex(df, bold_best=bold_best))
    return paths
