"""Summary tables: Markdown, CSV and LaTeX (booktabs) files, and a compact console table.

CSV keeps full precision and the plain column names (a random-weights metric keeps its
``"(random weights)"`` mark). Markdown and LaTeX use readable labels with units and the
direction of each metric (↑ / ↓ better), and round numbers per column: bpp 4 decimals,
dB 2 decimals, values under 10 (MS-SSIM, LPIPS, mIoU) 4 decimals, larger ones 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from ..atomic import output_dir, write_text, write_with
from .floor import FLOOR_NOTE, is_floor
from .intervals import ci_notes, decorate, latex_interval_cells, small_n_notes
from .summary import RANDOM_MARK, ColumnInfo, column_info

PRETTY: dict[str, str] = {
    "codec": "codec", "rate": "rate", "n_ok": "n ok", "n_failed": "n failed", "bpp": "bpp",
    "psnr": "PSNR", "psnr_of_mean_mse": "PSNR of mean MSE", "mse": "MSE",
    "msssim": "MS-SSIM", "msssim_db": "MS-SSIM", "lpips": "LPIPS", "dists": "DISTS",
    "fid": "FID", "kid": "KID", "miou": "mIoU", "pixel_accuracy": "pixel accuracy",
    "miou_orig": "mIoU vs original", "miou_orig_floor": "mIoU vs original: segmenter floor", "miou_gt": "mIoU vs GT",
    "miou_orig_img": "mIoU vs original (per image)", "miou_gt_img": "mIoU vs GT (per image)",
}

ARROWS = {True: "↑", False: "↓"}
LATEX_ARROWS = {True: r"$\uparrow$", False: r"$\downarrow$"}
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def pretty_name(info: ColumnInfo) -> str:
    """Readable name without unit: ``"MS-SSIM"``, ``"bpp (image)"``, ``"LPIPS (random weights)"``."""
    if info.kind == "rate" and info.key.startswith("bpp_"):
        base = f"bpp ({info.key[4:]})"
    else:
        base = PRETTY.get(info.key, info.key)
    return base + RANDOM_MARK if info.random_weights else base


def header(info: ColumnInfo, arrows: dict[bool, str] = ARROWS) -> str:
    """Column header with unit and direction: ``"PSNR [dB] ↑"``."""
    text = pretty_name(info)
    if info.unit and info.kind != "rate":
        text += f" [{info.unit}]"
    if info.kind in ("dataset", "mean") and info.higher_is_better is not None:
        text += " " + arrows[info.higher_is_better]
    return text


def decimals(info: ColumnInfo, values: pd.Series) -> int:
    """Decimals for a numeric column: bpp 4, dB 2, small values (< 10) 4, others 2."""
    if info.kind == "rate":
        return 4
    if info.unit == "dB":
        return 2
    finite = [abs(float(v)) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return 4 if not finite or max(finite) < 10 else 2


def _formatter(info: ColumnInfo, values: pd.Series, nan: str, inf: str) -> Callable[[object], str]:
    if info.kind == "key":
        return str
    if info.kind == "count":
        return lambda v: str(int(v)) if not pd.isna(v) else nan
    places = decimals(info, values)

    def fmt(v: object) -> str:
        if v is None or pd.isna(v):
            return nan
        x = float(v)  # type: ignore[arg-type]
        if math.isinf(x):
            return inf if x > 0 else "-" + inf
        return f"{x:.{places}f}"

    return fmt


def formatted(df: pd.DataFrame, *, nan: str = "–", inf: str = "inf",
              infos: dict[str, ColumnInfo] | None = None) -> tuple[pd.DataFrame, dict[str, ColumnInfo]]:
    """A copy of ``df`` with every cell as a rounded string, and the column metadata."""
    infos = infos if infos is not None else column_info(df)
    out = pd.DataFrame({c: [_formatter(infos[c], df[c], nan, inf)(v) for v in df[c]] for c in df.columns},
                       index=df.index)
    labels = df.attrs.get("codec_labels") or {}
    if labels and "codec" in out:  # e.g. "SPIC (BPG stand-in: heic)" instead of "spic"
        out["codec"] = [labels.get(v, v) for v in out["codec"]]
    return out, infos


def _align(infos: dict[str, ColumnInfo], columns: list[str]) -> list[str]:
    return ["left" if infos[c].kind == "key" else "right" for c in columns]


def printed_columns(df: pd.DataFrame, infos: dict[str, ColumnInfo] | None = None) -> list[str]:
    """Columns of the printed tables: all but the detail ones (those stay in the CSV)."""
    infos = infos if infos is not None else column_info(df)
    return [c for c in df.columns if not infos[c].detail]


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table with units and ↑/↓ in the headers."""
    infos = column_info(df)
    cols = printed_columns(df, infos)
    cells, _ = formatted(df[cols], infos=infos)
    cells = decorate(df, cells, infos)  # value ± half-width, small-N marks
    cells.columns = [header(infos[c]) for c in cols]
    table = cells.to_markdown(index=False, disable_numparse=True, colalign=_align(infos, cols))
    notes = _notes(df)
    return table + ("\n\n" + "\n".join(f"> {n}" for n in notes) if notes else "") + "\n"


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(df: pd.DataFrame) -> str:
    """A booktabs table (``\\toprule``/``\\midrule``/``\\bottomrule``); a codec's name is
    printed on its first rate point only."""
    infos = column_info(df)
    cols = printed_columns(df, infos)
    cells, _ = formatted(df[cols], nan="--", inf=r"$\infty$", infos=infos)
    cells = decorate(df, cells, infos, style="none")  # small-N marks
    cells, cols, infos = latex_interval_cells(df, cells, infos, cols)  # [lo, hi] columns
    for c in cols:
        if infos[c].kind == "key":
            cells[c] = [latex_escape(v) for v in cells[c]]
    if "codec" in cells and len(cells):
        first = cells["codec"].ne(cells["codec"].shift())
        cells["codec"] = cells["codec"].where(first, "")
    heads = []
    for c in cols:
        info = infos[c]
        text = latex_escape(pretty_name(info))
        if info.unit and info.kind != "rate":
            text += f" [{latex_escape(info.unit)}]"
        if info.kind in ("dataset", "mean") and info.higher_is_better is not None:
            text += " " + LATEX_ARROWS[info.higher_is_better]
        heads.append(text)
    cells.columns = heads
    spec = "".join("l" if infos[c].kind == "key" else "r" for c in cols)
    caption = ("Rate--distortion summary per codec and rate point: bpp is the mean over images; "
               "metrics are dataset-level values over the same images.")
    notes = _notes(df)
    if notes:
        caption += " " + " ".join(latex_escape(n) for n in notes)
    run_id = df.attrs.get("run_id")
    label = f"tab:{run_id}" if run_id else "tab:summary"
    return cells.to_latex(index=False, escape=False, column_format=spec, caption=caption, label=label)


def _notes(df: pd.DataFrame) -> list[str]:
    infos = column_info(df)
    notes = []
    if any(i.random_weights for i in infos.values()):
        notes.append("Columns marked (random weights) come from networks with random weights: "
                     "smoke-test numbers, not measurements.")
    if any(is_floor(i.key) for i in infos.values()):
        notes.append(FLOOR_NOTE)
    n_detail = sum(i.detail for i in infos.values())
    if n_detail:
        notes.append(f"{n_detail} more columns (sample counts, per-class values) are in the CSV.")
    notes += small_n_notes(df, infos) + ci_notes(df)
    notes += [f"Warning: {w}" for w in df.attrs.get("warnings", [])]
    if df.attrs.get("run_id"):
        notes.append(f"Run {df.attrs['run_id']}.")
    return notes


def write_tables(df: pd.DataFrame, out_dir: Path | str, stem: str = "summary") -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` (full precision) and ``<stem>.tex``, each atomically;
    returns the paths."""
    out = output_dir(out_dir, "report folder")
    paths = [out / f"{stem}.md", out / f"{stem}.csv", out / f"{stem}.tex"]
    write_text(paths[0], to_markdown(df))
    write_with(paths[1], lambda tmp: df.to_csv(tmp, index=False))
    write_text(paths[2], to_latex(df))
    return paths


def render_console(df: pd.DataFrame) -> str:
    """A compact plain-text table for the terminal: counts, bpp and dataset-level values."""
    if df.empty:
        return "(no rows)"
    infos = column_info(df)
    keep = [c for c in printed_columns(df, infos)
            if infos[c].kind in ("key", "dataset")
            or c in ("n_ok", "bpp")
            or (c == "n_failed" and bool((df[c] > 0).any()))]
    if not any(infos[c].kind == "dataset" for c in keep):  # no compute() values: show the means
        keep += [c for c in printed_columns(df, infos) if infos[c].kind == "mean"]
    cells, _ = formatted(df[keep], infos=infos)
    cells = decorate(df, cells, infos)
    cells.columns = [header(infos[c]) for c in keep]
    return tabulate(cells.values.tolist(), headers=list(cells.columns), tablefmt="simple",
                    disable_numparse=True, colalign=_align(infos, keep))
