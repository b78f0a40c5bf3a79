"""One self-contained HTML page for one or more runs (``bench report --html``).

Everything is inline: curves are PNGs (those ``bench report`` saved beside the page when
they are of the same data and code, else drawn at 110 dpi) and image crops lossy WebP
thumbnails (quality 90, a preview: exact pixels come from ``bench export``) embedded as
``data:`` URIs, the style sheet
and a few lines of script are in the page, there is no external asset or font. A table of
contents leads to the sections, each collapsed (``<details>``) until opened; a 26-rate-point
run stays well under 3 MB. The page holds, per dataset (runs of the same dataset content are
drawn together):

* provenance: run ids, tag, git sha, device, packages, dataset hash and protocol, codec
  and metric settings;
* the summary table (codec × rate point, units and ↑/↓ in the headers, as in summary.md;
  bookkeeping such as ``fid_n`` or ``kid_subsets`` stays in summary.csv);
* rate curves (one per metric, same colours per codec as every other figure);
* per-class IoU at every rate point (a selector, :mod:`.html_iou`) when the mIoU rows hold
  ``iou_gt/<class>`` (or ``iou_orig/<class>``) values;
* side-by-side crops (original and each codec's reconstruction at the rate point nearest
  the chosen bpp on the chosen image).

Reconstructions are **recomputed** for the page (nothing extra is stored in a run): the
codec is rebuilt from its card with the settings recorded in the run (its ``describe()``
must match the recorded one, else the crop is skipped with the reason), the image is
reloaded through the dataset, and the recomputed byte count is checked against the stored
row (a difference, e.g. from a non-deterministic decoder, is printed under the crop). The
clean reference (``original``) is the first crop itself, never re-coded. :func:`write_html`
keeps the curves' PNGs and the crops by content in ``.report-cache/`` beside the page, so the
page of unchanged runs is written again without drawing or coding anything.

* the worst images: per codec one table (rate points × criteria), crops for the rate point
  nearest the chosen bpp.

The inline script opens the section a link points to, switches the IoU view and counts
decoded images into ``body[data-images-loaded]`` (used by the headless-browser test).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.report.html_parts import (
    HtmlOptions,
    Part,
    _esc,
    _Group,
    _img,
    assemble,
    failed_figure,
    keep_file,
    palette_png,
    png_data_uri,
)
from bench.report.recompute import Crops, run_dataset
from bench.storage.atomic import write_text
from bench.storage.store import Store

from ..errors import BenchError
from . import html_iou
from .attrs import frame_attrs, run_context
from .caveats import caveat_note
from .curves import REFERENCE_CODEC, curve_columns, curve_jobs
from .floor import FLOOR_NOTE, floor_value, is_floor
from .formatting import images_text
from .intervals import CI_KIND, add_intervals, ci_notes, decorate, small_n_notes
from .rates import rate_note, rate_view
from .render import free_cores, saved_copy, start
from .summary import column_info, is_detail, summarise
from .tables import formatted, header, printed_columns

log = logging.getLogger("bench")

CACHE_FOLDER = ".report-cache"  # beside report.html: curves and crops kept by content

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em} h3{margin-top:1.5em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child,td.key{text-align:left}
.curves{display:flex;flex-wrap:wrap;gap:.5em} .curves img{width:380px;border:1px solid #eee}
.crops{display:flex;flex-wrap:wrap;gap:.8em} figure{margin:0} figcaption{font-size:.8em;max-width:260px}
.crops img{image-rendering:pixelated;width:256px;border:1px solid #ccc}
.note{color:#a33;font-size:.85em} details{margin:.3em 0} pre{font-size:.78em;background:#f8f8f8;padding:.5em;overflow-x:auto}
.random{color:#c00;font-weight:bold}
nav.toc{background:#f7f7f7;border:1px solid #ddd;padding:.3em 1em;font-size:.9em} nav.toc ol{margin:.2em 0}
nav.toc h2{margin:.3em 0;border:0}
details.section{border-top:1px solid #ddd;margin:.2em 0} details.section>summary{cursor:pointer;padding:.3em 0}
details.section>summary h3{display:inline;margin:0;font-size:1.15em}
""" + html_iou.CSS

SCRIPT = html_iou.SCRIPT + """
function openTarget() {
  var el = location.hash && document.getElementById(location.hash.slice(1));
  for (; el; el = el.parentElement) { if (el.tagName === 'DETAILS') { el.open = true; } }
}
window.addEventListener('hashchange', openTarget); openTarget();
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-loaded',
    String(imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length));
});
"""


# -- small helpers -----------------------------------------------------------------------
def table_html(df: pd.DataFrame) -> str:
    """The summary as an HTML table with rounded numbers and unit/direction headers."""
    cells, infos = formatted(df)
    cells = decorate(df, cells, infos)  # value ± half-width (with --ci), small-N marks
    printed = set(printed_columns(df, infos))
    shown = [c for c in df.columns if infos[c].kind != CI_KIND and c in printed and not _bookkeeping(infos[c].key)]
    heads = "".join(f"<th>{_esc(header(infos[c]))}</th>" for c in shown)
    body = []
    for _, row in cells.iterrows():
        tds = "".join(f'<td{" class=key" if infos[c].kind == "key" else ""}>{_esc(row[c])}</td>' for c in shown)
        body.append(f"<tr>{tds}</tr>")
    notes = "".join(f'<p class="note">{_esc(n)}</p>' for n in small_n_notes(df, infos) + ci_notes(df))
    return f'<table class="summary"><thead><tr>{heads}</tr></thead><tbody>{"".join(body)}</tbody></table>{notes}'


# -- runs and groups ---------------------------------------------------------------------
#: Summary attributes a group's frame takes from its runs' (listed values, in first-seen order).
_MERGED_ATTRS = ("random_metrics", "parts", "warnings", "caveats")


def _groups(store: Store, run_ids: Sequence[str], ci: Any = None) -> list[_Group]:
    runs = [store.run(r) for r in run_ids]
    by_content: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_content.setdefault(str((run["meta"].get("dataset") or {}).get("content_hash")), []).append(run)
    out = []
    for group_runs in by_content.values():
        frames, origin, columns, shown = [], {}, {}, {}
        names: dict[str, int] = {}
        sums = [summarise(store, r["run_id"]) for r in group_runs]
        if ci is not None:
            sums = [add_intervals(df, store, r["run_id"], boot=ci) for df, r in zip(sums, group_runs)]
        for df in sums:
            for c in dict.fromkeys(df["codec"]):
                names[c] = names.get(c, 0) + 1
        for run, df in zip(group_runs, sums):
            run_tag = run["meta"].get("tag")
            tag = run_tag or run["run_id"][-6:]
            df = df.copy()
            labels = {c: (f"{c}@{tag}" if run_tag or names[c] > 1 else c) for c in dict.fromkeys(df["codec"])}
            origin.update({lab: (run["run_id"], c) for c, lab in labels.items()})
            own = df.attrs.get("codec_labels") or {}  # e.g. "SPIC (BPG stand-in: heic)", "jpeg@T" (tagged run)
            shown.update({lab: own[c] if run_tag else own[c] + lab[len(c):] for c, lab in labels.items() if c in own})
            df["codec"] = df["codec"].map(labels)
            columns.update(df.attrs.get("columns", {}))
            frames.append(df)
        summary = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        context = run_context(group_runs[0])  # one dataset content; the protocols of all the runs
        context["protocol"] = ", ".join(dict.fromkeys(str(df.attrs.get("protocol") or "card") for df in sums))
        merged = {k: list(dict.fromkeys(x for df in sums for x in df.attrs.get(k) or []))
                  for k in _MERGED_ATTRS if any(k in df.attrs for df in sums)}  # a curve's caveats and marks
        if len(sums) == 1 and "run_id" in sums[0].attrs:
            merged["run_id"] = sums[0].attrs["run_id"]
        summary.attrs = frame_attrs(columns=columns, codec_labels=shown, **context, **merged,
                                    **({"ci": sums[0].attrs["ci"]} if ci else {}))
        out.append(_Group(group_runs, summary, origin))
    return out


def _default_bpp(df: pd.DataFrame) -> float:
    bpp = pd.to_numeric(df["bpp"], errors="coerce")
    bpp = bpp[np.isfinite(bpp)]
    return float(np.median(bpp)) if len(bpp) else math.nan


# -- sections ----------------------------------------------------------------------------
def provenance_html(run: Mapping[str, Any]) -> str:
    meta, cfg = run["meta"], run["config"]
    ds = meta.get("dataset") or {}
    machine = meta.get("machine") or {}
    when = datetime.datetime.fromtimestamp(run["updated"]).strftime("%Y-%m-%d %H:%M")
    random = [n for n, d in (meta.get("metrics") or {}).items() if isinstance(d, dict) and d.get("random_weights")]
    rows = [("run", run["run_id"]), ("status", run["status"]), ("updated", when), ("tag", meta.get("tag") or "–"),
            ("git", meta.get("git_sha") or "unknown"), ("device", machine.get("device", "?")),
            ("python", machine.get("python", "?")),
            ("dataset", f"{ds.get('name', cfg.get('dataset'))}: {images_text(ds.get('n_images'))}, "
                        f"content sha256 {str(ds.get('content_hash'))[:16]}…"),
            ("protocol", json.dumps(ds.get("protocol"), sort_keys=True)),
            ("codecs", ", ".join(meta.get("codecs") or {})), ("metrics", ", ".join(meta.get("metrics") or {}))]
    table = "".join(f"<tr><th>{_esc(k)}</th><td class=key>{_esc(v)}</td></tr>" for k, v in rows)
    warn = (f'<p class="random">RANDOM WEIGHTS in {", ".join(map(_esc, random))}: smoke-test values, '
            "not a measurement.</p>" if random else "")
    details = "".join(
        f"<details><summary>{_esc(title)}</summary><pre>{_esc(json.dumps(meta.get(key), indent=1, sort_keys=True, default=str))}</pre></details>"
        for title, key in (("codec settings", "codecs"), ("metric settings", "metrics"), ("packages", "packages"),
                           ("skipped components", "skipped")))
    return f"<h3>{_esc(run['run_id'])}</h3>{warn}<table class=meta>{table}</table>{details}"


def _bookkeeping(key: str) -> bool:
    """Keys that are counts or settings rather than quality: the summary's detail keys (FID's
    N, classes seen, per-class IoUs shown as bars, interval bounds) and matched-rate settings."""
    return is_detail(key) or key.startswith("matched_") or key.endswith("_subsets")


def floor_html(df: pd.DataFrame) -> str:
    """A line under the summary naming the segmenter's noise floor beside mIoU vs original."""
    infos = column_info(df)
    levels = [(infos[c], floor_value(df, c)) for c in df.columns if is_floor(infos[c].key)]
    shown = [f"{_esc(header(i))} = {v:.4f}" for i, v in levels if math.isfinite(v)]
    return f'<p class="floor">{"; ".join(shown)}. {_esc(FLOOR_NOTE)}</p>' if shown else ""


def curves_html(df: pd.DataFrame, folder: Path, report: Path | None = None) -> Part:
    """One PNG per metric curve: the one ``bench report`` saved in ``report`` from the same
    data and code (200 dpi, :func:`bench.report.render.saved_copy`), else drawn at 110 dpi into
    ``folder`` in other processes (bench.report.render) while the page's other sections are
    computed; embedded with a 256-colour palette (:func:`palette_png`). The returned function
    waits for them and gives the section's HTML."""
    infos = column_info(df)
    columns = [c for c in curve_columns(df) if not _bookkeeping(infos[c].key)]
    if not columns:
        return "<p>no metric curves</p>"
    jobs = curve_jobs(df, folder, columns)
    found = [saved_copy(job, report, ".png") if report is not None else None for job in jobs]
    pending = start([replace(job, formats=((".png", {"dpi": 110}),)) for job, f in zip(jobs, found) if f is None])

    def html() -> str:
        drawn = iter(pending.wait())
        paths = [f or next(drawn) for f in found]
        imgs = [_img(png_data_uri(_page_png(path, folder)), f"{column} vs bpp", "curve")
                for column, path in zip(columns, paths)]
        return f'<div class="curves">{"".join(imgs)}</div>'

    return html


def _page_png(path: Path, folder: Path) -> bytes:
    """:func:`palette_png` of a curve's file, kept in ``folder/page/`` by the file's sha256."""
    data = path.read_bytes()
    kept = folder / "page" / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    try:
        return kept.read_bytes()
    except OSError:
        small = palette_png(data)
    keep_file(kept, small)
    return small


def crops_html(store: Store, group: _Group, bpp: float, options: HtmlOptions, crops: Crops) -> Part:
    """Original and reconstructions of one image, centre-cropped, recomputed by ``crops``
    while the rest of the page is assembled. The clean reference (``original``) is the first
    crop, its lossless bpp in the caption."""
    rows: dict[str, Any] = {}
    for run in group.runs:
        for r in store.rows(run["run_id"], states=False):
            if r.status == "ok":
                rows.setdefault(r.image_id, []).append((run, r))
    if not rows:
        return "<p>no successful rows to show</p>"
    labels = list(dict.fromkeys(group.summary["codec"]))
    if options.image_id is not None:
        image_id = options.image_id
        if image_id not in rows:
            return f'<p class="note">image {_esc(image_id)} has no successful rows in these runs</p>'
    else:
        image_id = max(sorted(rows), key=lambda i: len({(ru["run_id"], r.codec) for ru, r in rows[i]}))
    sha = next((r.notes.get("image_sha256") for _, r in rows[image_id] if r.notes.get("image_sha256")), None)
    first = next((r for _, r in rows[image_id]), None)
    size = f" ({first.height}×{first.width})" if first is not None and first.height else ""
    clean = [r for _, r in rows[image_id] if r.codec == REFERENCE_CODEC and r.bpp]
    lossless = f", lossless {float(clean[0].bpp):.4f} bpp" if clean else ""
    original = crops.original(image_id, sha)
    coded = []
    for label in labels:
        run_id, codec_name = group.origin[label]
        cands = [r for ru, r in rows[image_id] if ru["run_id"] == run_id and r.codec == codec_name and r.bpp]
        if cands and codec_name != REFERENCE_CODEC:
            row = min(cands, key=lambda r: abs(float(r.bpp) - bpp))
            run = next(ru for ru in group.runs if ru["run_id"] == run_id)
            coded.append((label, row, crops.reconstruction(run, codec_name, row.rate, image_id, sha)))

    def html() -> str:
        try:
            figs = [f'<figure>{_img(original.result()["uri"], "original")}'
                    f"<figcaption>original {_esc(image_id)}{size}{lossless}</figcaption></figure>"]
        except (BenchError, OSError) as err:
            return f'<p class="note">crops skipped: cannot load image {_esc(image_id)}: {_esc(err)}</p>'
        for label, row, future in coded:
            try:
                got = future.result()
            except Exception as err:  # one codec's failure must not lose the page
                figs.append(failed_figure(f"{label} @ {row.rate}", err))
                continue
            stored = sum(row.bytes.values())
            check = "" if got["bytes"] == stored else (
                f'<br><span class="note">recomputed {got["bytes"]} B ≠ stored {stored} B</span>')
            psnr = row.metrics.get("psnr")
            extra = f", PSNR {psnr:.2f} dB" if isinstance(psnr, (int, float)) and math.isfinite(psnr) else ""
            figs.append(f'<figure>{_img(got["uri"], label)}'
                        f"<figcaption>{_esc(label)} rate {_esc(row.rate)}: {float(row.bpp):.4f} bpp{extra}{check}"
                        f"</figcaption></figure>")
        return (f"<p>image {_esc(image_id)}, centre crop {options.crop}×{options.crop} px, each codec at its rate "
                f"point nearest {bpp:.4f} bpp on this image (reconstructions recomputed once, then kept by "
                f'content)</p><div class="crops">{"".join(figs)}</div>')

    return html


# -- page --------------------------------------------------------------------------------
def _section(sid: str, title: str, body: Part, toc: list[tuple[str, str]]) -> Part:
    """A collapsed section (``<details>``) listed in the table of contents."""
    toc.append((sid, title))

    def html(inner: str) -> str:
        return f'<details class=section id="{sid}"><summary><h3>{_esc(title)}</h3></summary>{inner}</details>'

    return (lambda: html(body())) if callable(body) else html(body)


def _toc(entries: list[tuple[str, str, list[tuple[str, str]]]]) -> str:
    items = "".join(f'<li><a href="#{gid}">{_esc(name)}</a><ol>'
                    + "".join(f'<li><a href="#{sid}">{_esc(t)}</a></li>' for sid, t in subs) + "</ol></li>"
                    for gid, name, subs in entries)
    return f'<nav class=toc aria-label="contents"><h2>Contents</h2><ol>{items}</ol></nav>'


def render_html(store: Store, run_ids: Sequence[str], options: HtmlOptions | None = None,
                cache: Path | str | None = None, figures: Path | str | None = None) -> str:
    """The whole page as a string. ``cache``: a folder keeping the curves' PNGs and the crops
    by content (:class:`~bench.report.recompute.Crops`), so an unchanged page is not redrawn
    or recomputed; None: nothing kept. ``figures``: a folder where ``bench report`` saved
    curves; one saved from the same data and code is embedded instead of drawn."""
    options = options or HtmlOptions()
    head = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
            f"<title>bench report: {_esc(', '.join(run_ids))}</title><style>{CSS}</style></head><body>",
            f"<h1>Rate–quality report</h1><p>generated {datetime.datetime.now():%Y-%m-%d %H:%M}; "
            "figures and tables computed from the run store; lower/higher-is-better marked ↓/↑. "
            "Sections open on click.</p>"]
    parts: list[Part] = []
    entries: list[tuple[str, str, list[tuple[str, str]]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-html-") as tmp, contextlib.ExitStack() as stack:
        for k, group in enumerate(_groups(store, run_ids, options.ci)):
            folder = Path(cache) / f"d{k}" if cache is not None else Path(tmp) / f"d{k}"
            crops = Crops(options, functools.partial(run_dataset, group.runs[0]), folder / "crops", free_cores())
            stack.callback(crops.close)
            _group_parts(store, group, options, f"d{k}", folder, parts, entries, crops,
                         Path(figures) if figures is not None else None)
        body = assemble(parts, "\n")  # the curves drawn and crops coded meanwhile
    return "\n".join([*head, _toc(entries), body, f"<script>{SCRIPT}</script></body></html>"])


def _group_parts(store: Store, group: _Group, options: HtmlOptions, gid: str, folder: Path, parts: list[Part],
                 entries: list[tuple[str, str, list[tuple[str, str]]]], crops: Crops,
                 figures: Path | None = None) -> None:
    """One dataset's sections, appended to ``parts``; its contents entry to ``entries``."""
    df = group.summary
    ds = (group.runs[0]["meta"].get("dataset") or {}).get("name", group.runs[0]["config"].get("dataset"))
    bpp = options.bpp if options.bpp is not None else _default_bpp(df)
    toc: list[tuple[str, str]] = []
    parts.append(f'<h2 id="{gid}">{_esc(ds)}</h2>')
    parts.append(_section(f"{gid}-provenance", "Provenance", "".join(provenance_html(r) for r in group.runs), toc))
    off = caveat_note(group.runs)  # bench.report.caveats: off-domain segmenter
    if off:
        parts.append(f'<p class="note caveat"><b>Caveat:</b> {_esc(off)}</p>')
    shown = rate_view(df, options.rate)  # IoU bars, crops and worst images stay at the real bpp
    note = rate_note(shown)
    rate_p = f'<p class="note">{_esc(note)}</p>' if note else ""
    parts.append(_section(f"{gid}-summary", "Summary", table_html(shown) + rate_p + floor_html(df), toc))
    parts.append(_section(f"{gid}-curves", "Rate curves", curves_html(shown, folder / "curves", figures), toc))
    bars = html_iou.iou_html(df, f"{gid}-iou", bpp)
    if bars:
        parts.append(_section(f"{gid}-iou", "Per-class IoU", bars, toc))
    if options.crops:
        parts.append(_section(f"{gid}-crops", "Reconstructions", crops_html(store, group, bpp, options, crops), toc))
    if options.worst > 0:
        from .html_worst import worst_html  # it uses this module's helpers

        parts.append(_section(f"{gid}-worst", "Worst images", worst_html(store, group, options, crops, bpp), toc))
    entries.append((gid, str(ds), toc))


def write_html(store: Store, run_ids: Sequence[str], path: Path | str, options: HtmlOptions | None = None) -> Path:
    """Write the page to ``path`` (UTF-8, atomically) and return it; its curves and crops are
    kept by content in ``.report-cache/`` beside it (a second page of the same runs redraws
    and recomputes nothing), and curves ``bench report`` saved beside it are reused."""
    folder = Path(path).parent
    return write_text(path, render_html(store, run_ids, options, folder / CACHE_FOLDER, folder))
