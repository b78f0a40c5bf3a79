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

Style: vector PDF with embedded TrueType fonts (fonttype 42) plus a 300-dpi PNG, 8–9 pt
fonts, one legend per figure, each codec's colour and marker from
:func:`bench.report.codec_colour` / :func:`bench.report.codec_marker` (the same in every
figure and report).
"""

from __future__ import annotations

import textwrap

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.storage.atomic import output_dir, write_with
from bench.analysis.compare import check_same_protocol
from bench.errors import ConfigError
from bench.report.curves import axis_label, codec_colour, codec_marker
from bench.report.intervals import add_intervals, ci_notes, draw_interval, draw_small_n, small_n_notes
from bench.report.curves import rate_axis_label
from bench.report.caveats import caveat_note
from bench.report.rates import check_rate, paper_codecs_of, rate_view
from bench.report.summary import column_info, summarise
from bench.analysis.stats import Bootstrap
from bench.storage.store import Store
from bench.modes import RateBasis

PNG_DPI = 300
STYLE: dict[str, Any] = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7.5, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "lines.linewidth": 1.3, "lines.markersize": 4, "pdf.fonttype": 42, "ps.fonttype": 42,
    "axes.spines.top": False, "axes.spines.right": False, "savefig.bbox": "tight", "savefig.pad_inches": 0.02,
}
#: Byte parts holding a losslessly coded semantic map (their mean bpp is SPIC's dotted line).
SSM_PARTS = ("ssm", "labels", "label", "labelmap", "label_map", "semantic_map")


@dataclass(frozen=True)
class Panel:
    """One axes: the first of ``keys`` found in the runs, drawn against bpp."""

    keys: tuple[str, ...]
    title: str
    ssm_line: bool = False


@dataclass(frozen=True)
class Preset:
    """A figure layout: panels in one row, one row per dataset when ``rows_by_dataset``."""

    name: str
    source: str
    panels: tuple[Panel, ...]
    rows_by_dataset: bool = False
    panel_size: tuple[float, float] = (1.75, 1.6)  # inches per panel
    protocol: str | None = None  # the paper's dataset protocol preset (bench.datasets.presets)
    rate: RateBasis = "real"  # default x axis: "real" bpp or each codec's "paper" formula rate


PRESETS: dict[str, Preset] = {
    "sqgan-fig12": Preset(
        "sqgan-fig12", "SQ-GAN (Pezone, Barbarossa, Caire), Fig. 12: FID, LPIPS, PSNR, mIoU vs BPP (Cityscapes)",
        (Panel(("fid",), "FID"), Panel(("lpips",), "LPIPS"), Panel(("psnr",), "PSNR"),
         Panel(("miou_gt", "miou_orig"), "mIoU")), protocol="sqgan", rate="paper"),
    "spic-fig4": Preset(
        "spic-fig4", "SPIC, Fig. 4: (a) mIoU and (b) FID vs BPP (Cityscapes); dotted line = lossless SSM bpp",
        (Panel(("miou_gt", "miou_orig"), "(a) mIoU", ssm_line=True), Panel(("fid",), "(b) FID")),
        panel_size=(2.6, 2.0), protocol="spic"),
    "iwai-fig8": Preset(
        "iwai-fig8", "Iwai et al., Fig. 8: LPIPS, FID, PSNR, MS-SSIM vs bpp; (a) COCO, (b) Cityscapes",
        (Panel(("lpips",), "LPIPS"), Panel(("fid",), "FID"), Panel(("psnr",), "PSNR"),
         Panel(("msssim", "msssim_db"), "MS-SSIM")),
        rows_by_dataset=True, protocol="iwai"),
}


#: Codec drawn as a horizontal reference line (its value on clean images), not as a curve.
REFERENCE_CODEC = "original"


class ProtocolWarning(UserWarning):
    """A figure preset is drawn from runs made under another protocol than its paper's."""


def run_protocol(run: dict[str, Any]) -> str:
    """The protocol preset a run was made under ("card" for runs without --protocol)."""
    return str((run["meta"].get("protocol") or {}).get("name") or "card")


def _protocol_summary(run: dict[str, Any]) -> str:
    """': 256x512, image bilinear, labels nearest-torch, mIoU average all' from a run's preset."""
    rec = run["meta"].get("protocol") or {}
    ds = rec.get("dataset") or {}
    if not ds:
        return ""
    size = f"{ds['height']}x{ds['width']}" if ds.get("height") else "native size"
    average = rec.get("miou_average_used", rec.get("miou_average"))
    bits = [size, f"image {ds.get('image_resample', '?')}", f"labels {ds.get('label_resample', '?')}",
            f"classes {ds.get('classes', '?')}", f"mIoU average {average}"]
    return ": " + ", ".join(bits)


def protocol_caption(p: "Preset", runs: Sequence["RunData"]) -> str:
    """Caption line naming the runs' protocol and the paper's; warns when they differ."""
    used = list(dict.fromkeys(run_protocol(r.run) for r in runs))
    if p.protocol is None:
        return f"protocol: {', '.join(used)}"
    others = [u for u in used if u != p.protocol]
    if not others:
        return f"protocol: {p.protocol} (the paper's){_protocol_summary(runs[0].run)}"
    msg = (f"{p.name}: runs made under protocol {', '.join(repr(u) for u in others)}, not the paper's "
           f"{p.protocol!r} (re-run with `bench run --protocol {p.protocol}` for the paper's numbers)")
    warnings.warn(msg, ProtocolWarning, stacklevel=3)
    return f"protocol: {', '.join(used)} — NOT the paper's ({p.protocol})"


@dataclass
class RunData:
    """A run's metadata and its summary (one row per codec × rate)."""

    run: dict[str, Any]
    summary: pd.DataFrame
    labels: dict[str, str] = field(default_factory=dict)  # codec name -> legend label

    @property
    def dataset(self) -> str:
        return str((self.run["meta"].get("dataset") or {}).get("name") or self.run["config"].get("dataset"))

    @property
    def content(self) -> str:
        return str((self.run["meta"].get("dataset") or {}).get("content_hash"))


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"figure preset {name!r} is unknown", f"use one of {', '.join(PRESETS)}")
    return PRESETS[name]


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


def _draw_panel(ax: Any, group: list[RunData], panel: Panel, ssm: float | None) -> str | None:
    """Draw one panel; returns the key drawn (None when no run has the metric)."""
    found = [(r, kc) for r, kc in ((r, _key_column(r.summary, panel.keys)) for r in group) if kc is not None]
    ax.set_xlabel(rate_axis_label(group[0].summary, "bpp") if group else "bpp")
    ax.set_title(panel.title)
    ax.grid(True, which="major", alpha=0.3, linewidth=0.5)
    if not found:
        ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_ylabel(panel.title.split(") ")[-1])
        return None
    key = found[0][1][0]
    info = column_info(found[0][0].summary)[found[0][1][1]]
    all_bpp: list[float] = []
    for r, (_k, col) in found:
        for codec, g in r.summary.groupby("codec", sort=True):
            if str(codec) == REFERENCE_CODEC:
                v = pd.to_numeric(g[col], errors="coerce")
                v = v[np.isfinite(v)]
                if len(v):
                    ax.axhline(float(v.mean()), color="0.45", linestyle="--", linewidth=0.9,
                               label=f"{r.labels.get(str(codec), str(codec))} (clean)")
                continue
            d = g[["bpp", col]].apply(pd.to_numeric, errors="coerce")
            d = d[np.isfinite(d["bpp"]) & np.isfinite(d[col])].sort_values("bpp")
            if d.empty:
                continue
            label = r.labels.get(str(codec), str(codec))
            if _real_in_paper_view(group, r, str(codec)):
                label += " (real bpp)"
            all_bpp += d["bpp"].tolist()
            ax.plot(d["bpp"], d[col], label=label, color=codec_colour(label), marker=codec_marker(label))
            draw_interval(ax, r.summary, col, d.index, d["bpp"], codec_colour(label), style="bars")
            draw_small_n(ax, r.summary, col, d.index, d["bpp"], d[col], codec_colour(label))
    if ssm is not None and panel.ssm_line:
        ax.axvline(ssm, color="black", linestyle=":", linewidth=1.0, label=f"lossless SSM ({ssm:.3f} bpp)")
    if all_bpp and min(all_bpp) > 0 and max(all_bpp) / min(all_bpp) > 10:
        ax.set_xscale("log")
    arrow = {True: " ↑", False: " ↓"}.get(info.higher_is_better, "") if info.higher_is_better is not None else ""
    ax.set_ylabel(axis_label(info) + arrow)
    if info.random_weights:
        ax.text(0.5, 0.02, "random weights", transform=ax.transAxes, ha="center", va="bottom", color="red",
                fontsize=6)
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


def figure(preset_name: str, runs: list[RunData], *, ssm: float | None = None) -> Figure:
    """The preset's figure for ``runs``; ``ssm``: bpp of the dotted SSM line (default:
    found in the runs' byte parts, see :func:`ssm_bpp`)."""
    p = preset(preset_name)
    rows = _group_rows(runs, p.rows_by_dataset)
    metric_names = {"fid", "lpips", "psnr", "miou", "msssim"}
    for group in rows:
        for other in group[1:]:
            owners = [m for m in metric_names if m in (group[0].run["meta"].get("metrics") or {})]
            check_same_protocol(group[0].run, other.run, owners)
        _label_codecs(group)
    n_rows, n_cols = len(rows), len(p.panels)
    w, h = p.panel_size
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(w * n_cols, h * n_rows + 0.45), layout="constrained")
        FigureCanvasAgg(fig)
        axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
        handles: dict[str, Any] = {}
        for i, group in enumerate(rows):
            line = ssm if ssm is not None else ssm_bpp(group)
            for j, panel in enumerate(p.panels):
                ax = axes[i, j]
                _draw_panel(ax, group, panel, line)
                for hdl, lab in zip(*ax.get_legend_handles_labels()):
                    handles.setdefault(lab, hdl)
            if p.rows_by_dataset:
                letter = "abcdefghijklmnopqrstuvwxyz"[i % 26]
                axes[i, 0].annotate(f"({letter}) {group[0].dataset}", xy=(0, 1), xycoords="axes fraction",
                                    xytext=(0, 14), textcoords="offset points", fontsize=9, weight="bold",
                                    ha="left", va="bottom")
        if handles:
            fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
                       ncol=min(len(handles), 6), frameon=False)
        caption = rate_caption(runs)
        off = caveat_note(r.run for r in runs)  # bench.report.caveats: off-domain segmenter
        caption = "\n".join(c for c in (caption, textwrap.fill(off, 120) if off else "") if c)
        fig.suptitle(f"{p.source}\n{protocol_caption(p, runs)}" + (f"\n{caption}" if caption else ""),
                     fontsize=7, color="0.35")
        notes = list(dict.fromkeys(n for r in runs
                                   for n in small_n_notes(r.summary) + ci_notes(r.summary, "error bars: the")))
        if notes:  # small-N values are drawn hollow; intervals are error bars
            fig.text(0.0, 0.0, "\n".join(notes) + (
                "\n(hollow markers: values marked *)" if any(small_n_notes(r.summary) for r in runs) else ""),
                fontsize=5.5, color="0.3", ha="left", va="top")
    return fig


def write_figure(preset_name: str, store: Store, run_ids: Sequence[str], out_dir: Path | str, *,
                 ssm: float | None = None, stem: str | None = None, ci: Bootstrap | None = None,
                 rate: RateBasis | None = None) -> list[Path]:
    """Draw the preset from stored runs and save ``<stem>.pdf`` (vector) and ``.png`` (300 dpi);
    ``ci``: draw bootstrap error bars (off by default, as the papers print them); ``rate``:
    "real" or "paper" x axis (default: the preset's, e.g. paper for sqgan-fig12)."""
    runs = load_runs(store, run_ids, ci, rate=check_rate(rate or preset(preset_name).rate))
    fig = figure(preset_name, runs, ssm=ssm)
    out = output_dir(out_dir, "figures folder")
    base = out / (stem or preset_name)
    paths = []
    with matplotlib.rc_context(STYLE):
        for suffix, kwargs in ((".pdf", {}), (".png", {"dpi": PNG_DPI})):
            paths.append(write_with(base.with_suffix(suffix), lambda tmp: fig.savefig(tmp, **kwargs)))
    return paths


def write_all(store: Store, run_ids: Sequence[str], out_dir: Path | str, rate: RateBasis | None = None) -> list[Path]:
    """Every preset for the same runs (what notebooks/figures.ipynb does)."""
    paths: list[Path] = []
    for name in PRESETS:
        paths += write_figure(name, store, run_ids, out_dir, rate=rate)
    return paths


def describe_presets() -> str:
    """One line per preset: name, source figure and panels."""
    return "\n".join(f"{p.name:12s} {p.source} [protocol: {p.protocol}; rate: {p.rate}]" for p in PRESETS.values())
