"""``load()`` shared by the labelled datasets (Cityscapes, COCO-Stuff): an image file plus,
when the dataset reads labels, its label map of the same native size, both brought to the
dataset's :class:`~bench.datasets.protocol.Resolution`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bench.datasets.base import Sample
from bench.datasets.protocol import Resolution, read_image_file, source_note
from bench.errors import ConfigError


class LabelledFiles(Protocol):
    """What :func:`load_labelled` needs of a dataset."""

    name: str
    with_labels: bool
    resolution: Resolution

    def read_labels(self, image_id: str) -> np.ndarray: ...


LabelSplit = Callable[[np.ndarray], "tuple[np.ndarray, dict[str, np.ndarray]]"]


def load_labelled(ds: LabelledFiles, image_id: str, path: Path, label_what: str,
                  meta: dict[str, Any] | None = None, *, read: Callable[[str], np.ndarray] | None = None,
                  split: LabelSplit | None = None) -> Sample:
    """The :class:`Sample` of ``image_id`` read from ``path`` (and ``ds.read_labels``): meta is
    ``meta`` then path, native size (H, W) and the source note (EXIF, 16-bit, palette…).
    ``label_what`` names the label file in the size-mismatch error ("gtFine map").
    ``read`` (default ``ds.read_labels``) gives the native label map; ``split`` turns it, once
    resized, into (labels, alt_labels) — e.g. COCO reads raw ids, resizes them (nearest commutes
    with class look-up tables) and derives each class set from them."""
    info: dict[str, Any] = {}
    raw = read_image_file(path, ds.name, info)
    labels = None
    alt: dict[str, np.ndarray] = {}
    if ds.with_labels:
        native = (read or ds.read_labels)(image_id)
        if native.shape != raw.shape[:2]:
            raise ConfigError(f"{ds.name}: {image_id} image is {raw.shape[:2]}, labels {native.shape}",
                              f"the image and its {label_what} must have the same size")
        labels = ds.resolution.labels(native)
        if split is not None:
            labels, alt = split(labels)
    return Sample(image_id, ds.resolution.image(raw), labels,
                  {**(meta or {}), "path": str(path), "native_size": [int(raw.shape[0]), int(raw.shape[1])],
                   **source_note(info)}, alt)
