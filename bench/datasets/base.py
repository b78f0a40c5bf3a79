"""The dataset protocol: an ordered list of image ids and a loader per id.

A :class:`Sample` is what the evaluation sees *after* the dataset's protocol (resize,
crop) has been applied: codecs encode exactly ``sample.image`` and metrics compare
against exactly it.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np
from PIL import Image

from ..errors import ConfigError, DatasetNotFoundError
from ..weights import sha256_file


@dataclass(frozen=True)
class ClassSet:
    """Semantic classes of a label map: ids 0..len(names)-1, ``ignore_index`` = void."""

    name: str
    names: tuple[str, ...]
    ignore_index: int = 255

    @property
    def num_classes(self) -> int:
        return len(self.names)


@dataclass
class Sample:
    """One evaluated image.

    ``image``: H×W×3 uint8 RGB (0..255) after the protocol's resize.
    ``labels``: H×W uint8 ground-truth ids of the dataset's class set (255 = ignore),
    or None when the dataset has no labels.
    """

    id: str
    image: np.ndarray
    labels: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


class Dataset(ABC):
    """Base class of dataset adapters."""

    name: ClassVar[str] = "dataset"
    class_set: ClassSet | None = None

    @abstractmethod
    def ids(self) -> list[str]:
        """Image ids in a stable order."""

    @abstractmethod
    def load(self, image_id: str) -> Sample:
        """The sample for ``image_id``; raises on an unreadable file."""

    def get(self, image_id: str) -> Sample:
        """:meth:`load`, with the label map's class set recorded in ``sample.meta["class_set"]``."""
        sample = self.load(image_id)
        if sample.labels is not None and self.class_set is not None:
            sample.meta.setdefault("class_set", self.class_set.name)
        return sample

    @abstractmethod
    def files(self, image_id: str) -> list[Path]:
        """Source files of one sample (image and labels), for the content hash."""

    def protocol(self) -> dict[str, Any]:
        """Everything that changes what the metrics see (resolution, resizing, classes)."""
        return {"dataset": self.name, "class_set": self.class_set.name if self.class_set else None}

    def content_hash(self, ids: Sequence[str] | None = None) -> str:
        """sha256 over ids, file bytes and the protocol: identifies exactly what was evaluated."""
        h = hashlib.sha256()
        h.update(json.dumps(self.protocol(), sort_keys=True).encode())
        for image_id in ids if ids is not None else self.ids():
            h.update(image_id.encode() + b"\0")
            for path in self.files(image_id):
                h.update(sha256_file(path).encode())
        return h.hexdigest()


def read_rgb(path: Path) -> np.ndarray:
    """H×W×3 uint8 RGB from an image file (grayscale and palette are converted)."""
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def read_label(path: Path) -> np.ndarray:
    """H×W uint8 label ids, read without any colour conversion."""
    with Image.open(path) as im:
        im.load()
        if im.mode not in ("L", "P", "I", "I;16"):
            raise ConfigError(f"label map {path} has mode {im.mode}", "label maps must be single-channel PNGs")
        return np.asarray(im).astype(np.uint8).copy()


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a uint8 RGB image (PIL, as the seeds' loaders do)."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map (never interpolates class ids)."""
    if labels.shape[:2] == (height, width):
        return labels
    return np.asarray(Image.fromarray(labels).resize((width, height), Image.NEAREST))


def require_dir(path: Path | None, dataset: str, layout: str, where: str) -> Path:
    """Check that a dataset root exists, else raise with the expected layout."""
    if path is None or not Path(path).is_dir():
        raise DatasetNotFoundError(
            f"{dataset}: dataset root {str(path) if path else '(not set)'} not found",
            f"pass --root DIR (or set it in datasets/{dataset}.yaml or the env variable); "
            f"expected layout:\n{layout}\n  download: {where}",
        )
    return Path(path)


def lookup_table(pairs: Iterable[tuple[int, int]], default: int = 255) -> np.ndarray:
    """A 256-entry uint8 lookup table from (source id, target id) pairs."""
    lut = np.full(256, default, dtype=np.uint8)
    for src, dst in pairs:
        lut[src] = dst
    return lut
