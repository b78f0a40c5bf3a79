"""Paper figures: the seeds' rate–quality figure layouts drawn from stored runs.

Presets (metric vs bpp panels, as in the papers in shared/seeds):

* ``sqgan-fig12`` — SQ-GAN (Pezone et al.) Fig. 12: FID, LPIPS, PSNR and mIoU vs bpp on
  Cityscapes, SQ-GAN against BPG and JPEG 2000. mIoU is against the ground truth
  (``miou_gt``) when the run has it, else against the original's segmentation.
* ``spic-fig4`` — SPIC Fig. 4: (a) mIoU vs bpp with a black dotted vertical line at the
  bpp of the losslessly coded semantic map, (b) FID vs bpp.
* ``iwai-fig8`` — Iwai et al. Fig. 8: LPIPS, FID, PSNR and MS-SSIM vs bpp, one row per
  dataset ((a) COCO, (b) Cityscapes): runs are grouped into rows by dataset content.

Each preset declares its paper's dataset protocol (``bench run --protocol sqgan|spic|iwai``,
see :mod:`bench.datasets.presets`); the figure's caption names the protocol of the runs
drawn and, when a run used another one, says so and warns (:class:`ProtocolWarning`). The
``original`` codec (the clean reference row) is drawn as a dashed horizontal line — its
metric value on clean images (e.g. the segmenter's mIoU ceiling) — not as a curve.

Several runs can be drawn together (e.g. a baseline run and a learned-codec run of the
same dataset): runs in one row must share the dataset protocol and the panels' metric
settings (:func:`bench.analysis.compare.check_same_protocol`). A codec present in several runs of
a row is labelled ``name@tag`` (or ``name@<run id suffix>`` without a tag).

Style (:mod:`bench.report.figstyle`): one column (3.5 in, default) or the full text width
(``width="double"``, 7.16 in; panels then side by side, two per row at one column), vector
PDF with embedded TrueType fonts (Type 42) plus a 300-dpi PNG and ``.caption.txt``, 7–8 pt
fonts, the runs' dataset and protocol in the title, one legend and a caption strip below the
panels (hollow rings = ``*`` values, ``†`` = fewer images, ``°`` = random weights, all
explained there), each codec's colour and marker from
:func:`bench.report.codec_colour` / :func:`bench.report.codec_marker` (the same in every
figure and report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.analysis.compare import check_same_protocol
from bench.analysis.stats import Bootstrap
from bench.errors import ConfigError
from bench.modes import RateBasis
from bench.report.caveats import caveat_note
from bench.report.curves import (
    REFERENCE_CODEC,
    REFERENCE_COLOUR,
    axis_label,
    codec_colour,
    codec_marker,
    finite_or_text,
    log_bpp_axis,
    rate_axis_label,
)
from bench.report.figstyle import (
    DEFAULT_WIDTH,
    STYLE,
    check_width,
    dagger_handle,
    draw_daggers,
    finish_layout,
    ring_handle,
)
from bench.report.figure_presets import (  # noqa: F401 - PRESETS, preset, describe_presets: re-exported
    PRESETS,
    Panel,
    Preset,
    ProtocolWarning,
    RunData,
    describe_presets,
    preset,
    protocol_caption,
    run_protocol,
)
from bench.report.formatting import images_text
from bench.report.intervals import SMALL_N_RULES, add_intervals, ci_notes, draw_interval, draw_small_n, small_n_notes
from bench.report.rates import check_rate, paper_codecs_of, rate_view
from bench.report.render import FigureJob, content_key, render
from bench.report.summary import column_info, summarise
from bench.report.tables import fewer_images
from bench.storage.atomic import output_dir
from bench.storage.store import Store

PNG_DPI = 300
#: Byte parts holding a losslessly coded semantic map (their mean bpp is SPIC's dotted line).
SSM_PARTS = ("ssm", "labels", "label", "labelmap", "label_map", "semantic_map")


def load_runs(store: Store, run_ids: Sequence[str], ci: Bootstrap | None = None, rate: RateBasis = "real") -> list[RunData]:
    """Summaries of the runs (ids or prefixes, ``latest``), in the given order; with ``ci``
    each carries bootstrap intervals (:func:`bench.report.intervals.add_intervals`); ``bpp``
    is the chosen rate (:func:`bench.report.rates.rate_view`)."""
    if not run_ids:
        raise ConfigError("no run given", "name runs (see `bench runs`)")
    out = []
    for rid in run_ids:
        run = store.run(rid)
        summary = summarise(store, run["run_id"])
        if ci is not None:
            summary = add_intervals(summary, store, run["run_id"], boot=ci)
        out.append(RunData(run, rate_view(summary, rate)))
    return out


def _key_column(df: pd.DataFrame, keys: Sequence[str]) -> tuple[str, str] | None:
    """(key, column) of the first of ``keys`` present in ``df`` with a finite value."""
    by_key = {info.key: col for col, info in column_info(df).items() if info.kind in ("dataset", "mean")}
    for key in keys:
        col = by_key.get(key)
        if col is not None and np.isfinite(pd.to_numeric(df[col], errors="coerce")).any():
            return key, col
    return None


def _group_rows(runs: list[RunData], by_dataset: bool) -> list[list[RunData]]:
    if not by_dataset:
        return [runs]
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        groups.setdefault(r.content, []).append(r)
    return list(groups.values())


def _label_codecs(group: list[RunData]) -> None:
    counts: dict[str, int] = {}
    for r in group:
        for c in dict.fromkeys(r.summary["codec"]):
            counts[c] = counts.get(c, 0) + 1
    for r in group:
        tag = r.run["meta"].get("tag") or r.run["run_id"][-6:]
        r.labels = {c: (f"{c}@{tag}" if counts[c] > 1 else c) for c in dict.fromkeys(r.summary["codec"])}


def ssm_bpp(group: list[RunData]) -> float | None:
    """Mean bpp of a lossless semantic-map part (``bpp_<part>`` for a part in
    :data:`SSM_PARTS`) over the rate points that send one; None when no run has one."""
    values = []
    for r in group:
        for part in SSM_PARTS:
            col = f"bpp_{part}"
            if col in r.summary:
                v = pd.to_numeric(r.summary[col], errors="coerce")
                values += [float(x) for x in v[np.isfinite(v) & (v > 0)]]
    return float(np.mean(values)) if values else None


@dataclass
class PanelMarks:
    """What a panel drew beyond lines: rings (``*``), daggers (``†``), the SSM line, notes."""

    rings: bool = False
    daggers: bool = False
    random: bool = False
    notes: list[str] = field(default_factory=list)


def _draw_panel(ax: Any, group: list[RunData], panel: Panel, ssm: float | None, marks: PanelMarks,
                title: str | None = None) -> str | None:
    """Draw one panel; returns the key drawn (None when no run has the metric)."""
    found = [(r, kc) for r, kc in ((r, _key_column(r.summary, panel.keys)) for r in group) if kc is not None]
    ax.set_xlabel(rate_axis_label(group[0].summary, "bpp") if group else "bpp")
    ax.set_title(title or panel.title)
    ax.grid(True, which="major", alpha=0.3, linewidth=0.5)
    if not found:
        ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_ylabel(panel.title.split(") ")[-1])
        return None
    key = found[0][1][0]
    info = column_info(found[0][0].summary)[found[0][1][1]]
    all_bpp: list[float] = []
    for r, (_k, col) in found:
        fewer = fewer_images(r.summary, column_info(r.summary), col)
        for codec, g in r.summary.groupby("codec", sort=True):
            if str(codec) == REFERENCE_CODEC:  # the clean reference: a line, never a point
                v = pd.to_numeric(g[col], errors="coerce")
                if np.isfinite(v).any():
                    level = float(v[np.isfinite(v)].mean())
                    ax.axhline(level, color=REFERENCE_COLOUR, linestyle="--", linewidth=0.9,
                               label=f"{r.labels.get(str(codec), str(codec))} (clean)")
                elif len(v):
                    marks.notes.append(f"{panel.title}: original (clean reference) {finite_or_text(v)}, not drawn.")
                continue
            d = g[["bpp", col]].apply(pd.to_numeric, errors="coerce")
            d = d[np.isfinite(d["bpp"]) & np.isfinite(d[col])].sort_values("bpp")
            if d.empty:
                continue
            label = r.labels.get(str(codec), str(codec))
            if _real_in_paper_view(group, r, str(codec)):
                label += " (real bpp)"
            all_bpp += d["bpp"].tolist()
            colour = codec_colour(label)
            ax.plot(d["bpp"], d[col], label=label, color=colour, marker=codec_marker(label))
            draw_interval(ax, r.summary, col, d.index, d["bpp"], colour, style="bars")
            marks.rings |= draw_small_n(ax, r.summary, col, d.index, d["bpp"], d[col], colour)
            marks.daggers |= draw_daggers(ax, d["bpp"], d[col], fewer.loc[d.index], colour)
    if ssm is not None and panel.ssm_line:
        ax.axvline(ssm, color="black", linestyle=":", linewidth=1.0, label=f"lossless SSM ({ssm:.3f} bpp)")
    elif panel.ssm_line:
        marks.notes.append("No lossless SSM rate in these runs (no codec sends a label-map part): the dotted "
                           "line is not drawn; give it with --ssm-bpp.")
    if all_bpp and min(all_bpp) > 0 and max(all_bpp) / min(all_bpp) > 10:
        log_bpp_axis(ax, few=True)
    arrow = {True: " ↑", False: " ↓"}.get(info.higher_is_better, "") if info.higher_is_better is not None else ""
    ax.set_ylabel(axis_label(replace(info, random_weights=False)) + arrow)
    if info.random_weights:
        marks.random = True
        ax.set_title(ax.get_title() + "°")
    return key


def _real_in_paper_view(group: list[RunData], r: RunData, codec: str) -> bool:
    """A codec drawn at its real bpp in a paper-rate figure where another codec has a formula."""
    return (r.summary.attrs.get("rate") == "paper" and codec in (r.summary.attrs.get("real_rate_codecs") or [])
            and any(paper_codecs_of(g.summary) for g in group))


def rate_caption(runs: list[RunData]) -> str | None:
    """What the x axis holds, for the figure's caption (None: real bpp, the default)."""
    if not runs or runs[0].summary.attrs.get("rate") != "paper":
        return None
    paper = sorted({c for r in runs for c in paper_codecs_of(r.summary)})
    real = sorted({c for r in runs for c in (r.summary.attrs.get("real_rate_codecs") or [])} - set(paper))
    if not paper:
        return "x axis: real bpp (no codec here has a paper formula rate)"
    text = f"x axis: the paper's formula rate for {', '.join(paper)}"
    return text + (f"; real bpp (transmitted bytes) for {', '.join(real)}" if real else "")


def _grid(n_panels: int, width: str) -> int:
    """Panels per row: two at one column (a 2 × 2 block for four), all at double width."""
    return min(n_panels, 2 if width == "single" else 4)


def run_title(runs: list[RunData]) -> str:
    """The runs' datasets, image counts and protocols: ``"kodak (6 images), protocol card"``."""
    sets = list(dict.fromkeys(f"{r.dataset} ({images_text(r.run['meta'].get('dataset', {}).get('n_images'))})"
                              for r in runs))
    protocols = list(dict.fromkeys(run_protocol(r.run) for r in runs))
    return f"{'; '.join(sets)}, protocol {', '.join(protocols)}"


def figure(preset_name: str, runs: list[RunData], *, ssm: float | None = None, width: str = DEFAULT_WIDTH) -> Figure:
    """The preset's figure for ``runs`` at one column (``width="single"``, 3.5 in) or the full
    text width (``"double"``, 7.16 in); ``ssm``: bpp of the dotted SSM line (default: found in
    the runs' byte parts, see :func:`ssm_bpp`). ``fig.caption_lines`` holds the caption."""
    p = preset(preset_name)
    w = check_width(width)
    rows = _group_rows(runs, p.rows_by_dataset)
    metric_names = {"fid", "lpips", "psnr", "miou", "msssim"}
    for group in rows:
        for other in group[1:]:
            owners = [m for m in metric_names if m in (group[0].run["meta"].get("metrics") or {})]
            check_same_protocol(group[0].run, other.run, owners)
        _label_codecs(group)
    n_cols = _grid(len(p.panels), width)
    per_group = -(-len(p.panels) // n_cols)
    n_rows = per_group * len(rows)
    marks = PanelMarks()
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(w, p.panel_height * n_rows + 0.3), layout="constrained")
        FigureCanvasAgg(fig)
        axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
        handles: dict[str, Any] = {}
        for i, group in enumerate(rows):
            line = ssm if ssm is not None else ssm_bpp(group)
            letter = "abcdefghijklmnopqrstuvwxyz"[i % 26]
            for j, panel in enumerate(p.panels):
                ax = axes[i * per_group + j // n_cols, j % n_cols]
                # rows by dataset: "(a) coco: FID"; one dataset is named by the figure's title alone
                title = f"({letter}) {group[0].dataset}: {panel.title}" if p.rows_by_dataset and len(rows) > 1 \
                    else panel.title
                _draw_panel(ax, group, panel, line, marks, title)
                for hdl, lab in zip(*ax.get_legend_handles_labels()):
                    handles.setdefault(lab, hdl)
            for k in range(len(p.panels), per_group * n_cols):  # an odd panel count leaves a cell empty
                axes[i * per_group + k // n_cols, k % n_cols].set_visible(False)
        legend = list(handles.values()) + ([ring_handle()] if marks.rings else []) + (
            [dagger_handle()] if marks.daggers else [])
        fig.suptitle(run_title(runs), fontsize=7, color="0.3")
        caption = rate_caption(runs)
        notes = [p.source + ".", protocol_caption(p, runs) + "."] + ([caption + "."] if caption else [])
        miou = any(k.startswith("miou") for pn in p.panels for k in pn.keys)
        off = caveat_note((r.run for r in runs), miou)  # bench.report.caveats: off-domain segmenter
        notes += ([off] if off else []) + list(dict.fromkeys(marks.notes))
        if marks.rings:
            drawn = [SMALL_N_RULES[m][2] for m in SMALL_N_RULES if any(m in pn.keys for pn in p.panels)]
            notes += list(dict.fromkeys(n + " Drawn with a hollow ring." for r in runs for n in small_n_notes(r.summary)
                                        if any(w in n for w in drawn)))
        if marks.daggers:
            notes.append("† computed on fewer images than the rate point has (the metric failed on the others).")
        notes += list(dict.fromkeys(n for r in runs for n in ci_notes(r.summary, "error bars: the")))
        warning = ("RANDOM WEIGHTS (° in a panel title): smoke-test values, not measurements." if marks.random
                   else None)
        fig.caption_lines = finish_layout(fig, legend, notes, warning)
    return fig


def figure_job(preset_name: str, store: Store, run_ids: Sequence[str], out_dir: Path | str, *,
               ssm: float | None = None, stem: str | None = None, ci: Bootstrap | None = None,
               rate: RateBasis | None = None, width: str = DEFAULT_WIDTH) -> FigureJob:
    """What :func:`write_figure` saves, as a job for :func:`bench.report.render.render`."""
    runs = load_runs(store, run_ids, ci, rate=check_rate(rate or preset(preset_name).rate))
    check_width(width)
    out = output_dir(out_dir, "figures folder")
    key = content_key("preset", preset_name, ssm, width, [(r.run, r.summary) for r in runs])
    return FigureJob(out / (stem or preset_name), key, lambda: figure(preset_name, runs, ssm=ssm, width=width),
                     lambda _fig: f"{preset(preset_name).name}: {run_title(runs)}.",
                     ((".pdf", {}), (".png", {"dpi": PNG_DPI})))


def write_figure(preset_name: str, store: Store, run_ids: Sequence[str], out_dir: Path | str, *,
                 ssm: float | None = None, stem: str | None = None, ci: Bootstrap | None = None,
                 rate: RateBasis | None = None, width: str = DEFAULT_WIDTH) -> list[Path]:
    """Draw the preset from stored runs and save ``<stem>.pdf`` (vector, Type 42 fonts),
    ``.png`` (300 dpi) and ``.caption.txt`` (the caption, for the paper's LaTeX); ``width``:
    "single" (3.5 in, default) or "double" (7.16 in) column;
    ``ci``: draw bootstrap error bars (off by default, as the papers print them); ``rate``:
    "real" or "paper" x axis (default: the preset's, e.g. paper for sqgan-fig12). Files saved
    from the same runs and options are not drawn again."""
    return render([figure_job(preset_name, store, run_ids, out_dir, ssm=ssm, stem=stem, ci=ci, rate=rate,
                              width=width)], workers=1)


def write_figures(names: Sequence[str], store: Store, run_ids: Sequence[str], out_dir: Path | str, *,
                  ssm: float | None = None, ci: Bootstrap | None = None, rate: RateBasis | None = None,
                  width: str = DEFAULT_WIDTH, workers: int | None = None) -> dict[str, list[Path]]:
    """Several presets for the same runs (as :func:`write_figure` each), drawn by ``workers``
    processes at once (default: the free cores); returns each preset's paths."""
    jobs = [figure_job(n, store, run_ids, out_dir, ssm=ssm, ci=ci, rate=rate, width=width) for n in names]
    render(jobs, workers)
    return {n: job.paths() for n, job in zip(names, jobs)}


def write_all(store: Store, run_ids: Sequence[str], out_dir: Path | str, rate: RateBasis | None = None,
              width: str = DEFAULT_WIDTH) -> list[Path]:
    """Every preset for the same runs (what notebooks/figures.ipynb does)."""
    return [p for paths in write_figures(list(PRESETS), store, run_ids, out_dir, rate=rate, width=width).values()
            for p in paths]
