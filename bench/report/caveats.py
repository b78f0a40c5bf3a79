"""Caveats a run records about its own numbers, and the one text every output shows.

Today: the OFF-DOMAIN caveat. A segmenter card declares its training ``domain`` (e.g.
``cityscapes``) and a dataset its ``domain`` (e.g. ``coco-stuff``); when a run's mIoU
segmenter (or the segmenter that gives semantic codecs their label maps) was trained on
another domain than the dataset's, its mIoU measures how a street-scene network (say)
reacts to photos it was never trained on: the run records that sentence in
``meta["caveats"]``, ``bench run`` prints it, and tables, figures and the HTML report show
it (:func:`run_caveats`, :func:`caveat_note`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PREFIX = "off-domain"


def off_domain_caveat(segmenter: str, segmenter_domain: str | None, dataset: str, dataset_domain: str | None,
                      role: str = "mIoU") -> str | None:
    """The caveat sentence when ``segmenter`` (trained on ``segmenter_domain``) is used on
    ``dataset`` (showing ``dataset_domain``), else None. A segmenter whose card declares no
    domain gets none (nothing to compare)."""
    if not segmenter_domain or segmenter_domain == dataset_domain:
        return None
    shows = f"{dataset_domain} images" if dataset_domain else "images of no declared domain"
    effect = ("its mIoU measures a network outside its training domain" if role == "mIoU"
              else "the senders' label maps come from a network outside its training domain")
    return (f"{PREFIX}: the {role} segmenter {segmenter} was trained on {segmenter_domain}; dataset {dataset} "
            f"shows {shows}: {effect}")


def run_caveats(run: Mapping[str, Any] | None) -> list[str]:
    """The caveats a stored run recorded (``store.run(id)``; [] for runs made before caveats)."""
    meta = (run or {}).get("meta") or {}
    return [str(c) for c in meta.get("caveats") or []]


def about_miou(caveat: str) -> bool:
    """True for the caveat of the mIoU segmenter: it concerns mIoU values only (the senders'
    label-map caveat concerns every value of a semantic codec)."""
    return caveat.startswith(f"{PREFIX}: the mIoU segmenter")


def shown_caveats(caveats: Iterable[str], miou: bool = True) -> list[str]:
    """The distinct ``caveats`` that an output showing mIoU (``miou``) or not has to carry."""
    return [c for c in dict.fromkeys(str(c) for c in caveats) if miou or not about_miou(c)]


def caveat_note(runs: Iterable[Mapping[str, Any]], miou: bool = True) -> str:
    """One line for a figure, table or page: every distinct caveat of ``runs`` ("" if none);
    without ``miou``, not the mIoU segmenter's (an output that shows no mIoU)."""
    return "; ".join(shown_caveats((c for run in runs for c in run_caveats(run)), miou))
