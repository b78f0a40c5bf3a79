"""Semantic segmenters: H×W×3 uint8 RGB → H×W uint8 class ids (255 = void).

Segmenters are named YAML cards in ``segmenters/*.yaml`` (data, read by the same card
mechanism as codecs and datasets: :mod:`bench.registry.cards`). A card names the backend
class (``entry``), its ``params``, its training ``domain`` and ``class_set``, and the
weights file (``weights: {file, url, sha256}``). :func:`make_segmenter` builds one
(construction is cheap, networks load on first use):

* ``espnetv2`` — native PyTorch ESPNetv2 with the EdgeNets Cityscapes weights (19 trainIds);
* ``deeplabv3-r101-cityscapes`` — mmsegmentation DeepLabV3 R101, Cityscapes (Iwai et al.'s network);
* ``deeplabv3-r101-coco-stuff164k`` — mmsegmentation DeepLabV3 R101, COCO-Stuff 171 classes;
* ``onnx`` / ``mmseg`` — any ONNX model / mmseg config + checkpoint (domain undeclared).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import Segmenter


def segmenter_names() -> list[str]:
    """Names of the registered segmenter cards."""
    from bench.registry import catalog

    return catalog.registry("segmenter").names()


def segmenter_card(name: str) -> dict[str, Any]:
    """The card (a dict) of the segmenter ``name``; raises :class:`UnknownNameError`."""
    from bench.registry import catalog

    return dict(catalog.registry("segmenter").get(name).card)


def segmenter_class(name: str) -> type[Segmenter]:
    """The class of the segmenter card ``name``; raises :class:`UnknownNameError`."""
    from bench.registry import catalog

    return catalog.registry("segmenter").get(name).load()


def make_segmenter(name: str, **params: Any) -> Segmenter:
    """Build the segmenter card ``name``: its card's ``params`` updated with ``params``
    (backend options plus weights_dir, allow_random_weights, device; None values are dropped)."""
    from bench.registry import cards, catalog

    entry = catalog.registry("segmenter").get(name)
    cls = entry.load()
    merged = cards.card_params(entry)
    merged.update({k: v for k, v in params.items() if v is not None})
    weights = entry.card.get("weights") or {}
    if isinstance(weights, dict) and weights.get("url") and "url" in inspect.signature(cls).parameters:
        merged.setdefault("url", str(weights["url"]))  # shown when the file is missing
    try:
        seg = cls(**merged)
    except TypeError as err:  # unknown or missing option
        raise ConfigError(f"segmenter {name!r}: {err}",
                          f"check the options of {cls.__name__} and 'params' in {entry.source}") from None
    seg.card = dict(entry.card)
    return seg


def extractor_id(segmenter: Segmenter) -> str:
    """The :mod:`bench.runtime.refcache` extractor id of a segmenter's label maps."""
    return f"segmenter:{segmenter.identity}"


def segment_cached(segmenter: Segmenter, image: np.ndarray, cache: Any = None) -> np.ndarray:
    """``segmenter.predict(image)`` through the reference cache (default
    :func:`bench.runtime.refcache.default_cache`): for ORIGINAL images, whose segmentation does
    not depend on the codec or rate. Shared by the mIoU metric and semantic codecs'
    senders, so each original is segmented once."""
    if cache is None:
        from bench.runtime.refcache import default_cache

        cache = default_cache()
    labels = cache.get_or_compute(image, extractor_id(segmenter), lambda: segmenter.predict(image))
    return np.asarray(labels, dtype=np.uint8)


__all__ = ["Segmenter", "extractor_id", "make_segmenter", "segment_cached", "segmenter_card", "segmenter_class",
           "segmenter_names"]
