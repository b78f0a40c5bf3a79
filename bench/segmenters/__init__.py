"""Semantic segmenters: H×W×3 uint8 RGB → H×W uint8 class ids (255 = void).

``SEGMENTERS`` maps a name to a lazy ``module:Class`` target; :func:`make_segmenter`
builds one (construction is cheap, networks load on first use).

* ``espnetv2`` — native PyTorch ESPNetv2 with the EdgeNets Cityscapes weights (19 trainIds);
* ``onnx`` — any ONNX segmentation model through onnxruntime (CPU);
* ``mmseg`` — an mmsegmentation config + checkpoint (optional extra, see scripts/build_mmcv.sh).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from ..errors import ConfigError, UnknownNameError
from .base import Segmenter

SEGMENTERS: dict[str, tuple[str, str]] = {
    # name: (target, one-line description)
    "espnetv2": ("bench.segmenters.espnetv2:ESPNetv2Segmenter", "ESPNetv2 (EdgeNets) Cityscapes 19 classes, PyTorch"),
    "onnx": ("bench.segmenters.onnx_backend:OnnxSegmenter", "an ONNX segmentation model via onnxruntime (CPU)"),
    "mmseg": ("bench.segmenters.mmseg_backend:MMSegSegmenter", "an mmsegmentation config + checkpoint"),
}


def segmenter_class(name: str) -> type[Segmenter]:
    """The class registered as ``name``; raises :class:`UnknownNameError`."""
    if name not in SEGMENTERS:
        raise UnknownNameError(f"unknown segmenter {name!r}", f"use one of: {', '.join(SEGMENTERS)}")
    module, _, attr = SEGMENTERS[name][0].partition(":")
    return getattr(importlib.import_module(module), attr)


def make_segmenter(name: str, **params: Any) -> Segmenter:
    """Build the segmenter ``name`` with ``params`` (backend options plus weights_dir,
    allow_random_weights, device)."""
    cls = segmenter_class(name)
    try:
        return cls(**params)
    except TypeError as err:  # unknown or missing option
        raise ConfigError(f"segmenter {name!r}: {err}", f"check the options of {cls.__name__}") from None


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


__all__ = ["SEGMENTERS", "Segmenter", "extractor_id", "make_segmenter", "segment_cached", "segmenter_class"]
