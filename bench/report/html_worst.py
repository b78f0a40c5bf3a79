"""The "Worst images" section of the HTML report (:mod:`.html`).

Per codec one table: for every rate point (numeric order, :func:`rate_key`) the images where
the codec does worst by each criterion of :data:`bench.report.evidence.CRITERIA`, and crops
(WebP thumbnails, recomputed) of the worst image per criterion at the rate point nearest the
page's bpp.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from bench.storage.store import Store

from .curves import REFERENCE_CODEC
from .evidence import with_image_iou, worst_images
from .html_parts import HtmlOptions, Part, _esc, _Group, _img, assemble, failed_figure
from .recompute import Crops
from .summary import load_run, per_image


def rate_key(rate: Any) -> tuple[int, float, str]:
    """Sort key of rate labels: numbers by value (5, 10, 35, 100), then other text."""
    try:
        return (0, float(str(rate)), str(rate))
    except ValueError:
        return (1, math.nan, str(rate))


def _worst_crops(run: Mapping[str, Any], codec: str, label: str, rate: str, top: pd.DataFrame,
                 crops: Crops, shas: Mapping[str, str]) -> Callable[[], str]:
    """Start coding the crops of the images in ``top``; the returned function gives their HTML."""
    todo = []
    for key, cg in top.groupby("image_id", sort=False):
        image_id, sha = str(key), shas.get(str(key))
        why = "; ".join(f"{c}: {v:.4g}" for c, v in zip(cg["criterion"], cg["value"]))
        todo.append((image_id, why, crops.original(image_id, sha), crops.reconstruction(run, codec, rate, image_id, sha)))

    def html() -> str:
        figs = []
        for image_id, why, original, recon in todo:
            try:
                uris = original.result()["uri"], recon.result()["uri"]
            except Exception as err:  # noqa: BLE001 - one crop's failure must not lose the page
                figs.append(failed_figure(image_id, err))
                continue
            figs.append(f'<figure>{_img(uris[0], "original")}'
                        f"<figcaption>original {_esc(image_id)}</figcaption></figure>"
                        f'<figure>{_img(uris[1], label)}'
                        f"<figcaption>{_esc(label)} @ {_esc(rate)} — {_esc(why)}</figcaption></figure>")
        return "".join(figs)

    return html


def worst_html(store: Store, group: _Group, options: HtmlOptions, crops: Crops,
               bpp: float = math.nan) -> Callable[[], str]:
    """Per codec, one table of the images where it does worst at each rate point (largest
    LPIPS, lowest PSNR, largest IoU drop vs the original's segmentation; rates in numeric
    order), with crops of the worst image per criterion at the rate point nearest ``bpp``
    (recomputed, when ``options.crops``, through ``crops``, while the page is assembled: the
    returned function gives the section). The clean reference (``original``) has no worst
    images: every one of its values is the ceiling."""
    parts: list[Part] = []
    by_origin = {v: k for k, v in group.origin.items()}
    for run in group.runs:
        loaded = load_run(store, run["run_id"], states=("miou",))  # per-image IoU: the one state needed
        images = with_image_iou(per_image(store, run["run_id"], loaded), loaded[1], run)
        worst = worst_images(images, options.worst)
        if worst.empty:
            continue
        shas = {str(i): str(s) for i, s in zip(images["image_id"], images.get("note_image_sha256", []))
                if isinstance(s, str) and s}  # the pixels each row coded: the crops' cache key
        mean_bpp = images.groupby(["codec", "rate"])["bpp"].mean() if "bpp" in images else pd.Series(dtype=float)
        for key, cw in worst.groupby("codec", sort=False):
            codec = str(key)
            if codec == REFERENCE_CODEC:
                continue
            label = by_origin.get((run["run_id"], codec), codec)
            criteria = list(dict.fromkeys(cw["criterion"]))
            rates = sorted(dict.fromkeys(str(r) for r in cw["rate"]), key=rate_key)
            lines = []
            for rate in rates:
                g = cw[cw["rate"] == rate]
                cells = "".join("<td class=key>" + ", ".join(f"{_esc(r.image_id)} ({r.value:.4g})" for r in
                                                             g[g["criterion"] == crit].itertuples()) + "</td>"
                                for crit in criteria)
                lines.append(f"<tr><td class=key>{_esc(rate)}</td>{cells}</tr>")
            heads = "".join(f"<th>{_esc(c)}</th>" for c in criteria)
            parts.append(f"<h4>{_esc(label)}</h4><table class=worst><thead><tr><th>rate</th>{heads}</tr></thead>"
                         f"<tbody>{''.join(lines)}</tbody></table>")
            near = [(abs(float(mean_bpp.get((codec, r), math.nan)) - bpp), rate_key(r), r) for r in rates]
            near = [n for n in near if math.isfinite(n[0])]
            if options.crops and near:
                rate = min(near)[2]
                top = cw[(cw["rate"] == rate) & (cw["rank"] == 1)]
                parts += [f'<div class="crops"><p>worst image per criterion at rate {_esc(rate)} '
                          f"(nearest {bpp:.4f} bpp):</p>", _worst_crops(run, codec, label, rate, top, crops, shas),
                          "</div>"]
    return lambda: assemble(parts) or "<p>no per-image values to rank</p>"
