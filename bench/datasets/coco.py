"""COCO val2017 images with COCO-Stuff pixel labels (Caesar et al. 2018).

Layout (official zips ``val2017.zip`` and ``stuffthingmaps_trainval2017.zip``)::

    ROOT/images/val2017/<id>.jpg            (or ROOT/val2017/<id>.jpg)
    ROOT/stuffthingmaps_trainval2017/val2017/<id>.png   values 0..181, 255 = unlabeled

Class sets (``classes``): "stuff171" (default; the 171 annotated classes, contiguous),
"merged9" (the 9 classes of Iwai et al.; see :mod:`bench.datasets.classes` for the
mapping and its justification) or "raw182" (the stored ids unchanged).
Default resolution: native (COCO images are ~640×480 and vary); ``height``/``width``
resize (``fit="center_crop"`` crops to the target aspect first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.modes import Fit

from ..errors import ConfigError, DatasetNotFoundError
from .base import ClassSet, Dataset, Sample, read_label, require_dir
from .classes import (
    COCO_MERGED_9,
    COCO_RAW_TO_MERGED9,
    COCO_RAW_TO_RAW182,
    COCO_RAW_TO_STUFF171,
    COCO_STUFF_171,
    COCO_STUFF_182,
    apply_lut,
)
from .labelled import load_labelled
from .protocol import Resolution, resolve_root

LAYOUT = (
    "  ROOT/images/<split>/<id>.jpg   (or ROOT/<split>/<id>.jpg)\n"
    "  ROOT/stuffthingmaps_trainval2017/<split>/<id>.png"
)
DOWNLOAD = ("http://images.cocodataset.org/zips/val2017.zip and "
            "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip "
            "(see https://github.com/nightrome/cocostuff)")
LABEL_DIR = "stuffthingmaps_trainval2017"
CLASS_CHOICES: dict[str, tuple[ClassSet, np.ndarray]] = {
    "stuff171": (COCO_STUFF_171, COCO_RAW_TO_STUFF171),
    "merged9": (COCO_MERGED_9, COCO_RAW_TO_MERGED9),
    "raw182": (COCO_STUFF_182, COCO_RAW_TO_RAW182),
}


class CocoStuffDataset(Dataset):
    """COCO-Stuff val2017. Ids are the zero-padded image ids (``000000000139``).

    Params: ``root`` (else ``$COCO_ROOT``, else ``default_root``), ``split`` (val2017 /
    train2017), ``classes``, ``height``/``width`` (pixels; None/0 = native), ``fit``,
    ``labels`` (False: images only).
    """

    name = "coco"
    domain = "coco-stuff"

    def __init__(self, root: str | Path | None = None, *, split: str = "val2017", classes: str = "stuff171",
                 height: Any = None, width: Any = None, fit: Fit = "resize",
                 image_resample: str = "bilinear", label_resample: str = "nearest", labels: bool = True,
                 root_env: str | None = "COCO_ROOT", default_root: str | Path | None = None) -> None:
        if classes not in CLASS_CHOICES:
            raise ConfigError(f"coco: classes={classes!r} is not one of {sorted(CLASS_CHOICES)}",
                              "use classes=stuff171, merged9 or raw182")
        self.root_env = root_env
        self.root = resolve_root(root, root_env, default_root, fetched="coco")
        self.split = str(split)
        self.classes = classes
        self.class_set, self._lut = CLASS_CHOICES[classes]
        self.with_labels = bool(labels)
        self.resolution = Resolution.from_params(self.name, height, width, fit, image_resample, label_resample)
        self._images: dict[str, Path] | None = None

    def _image_dir(self, root: Path) -> Path:
        for candidate in (root / "images" / self.split, root / self.split):
            if candidate.is_dir():
                return candidate
        raise DatasetNotFoundError(
            f"coco: no image folder {root / 'images' / self.split} or {root / self.split}",
            f"unzip {self.split}.zip into ROOT/images; expected layout:\n{LAYOUT}\n  download: {DOWNLOAD}")

    def _layout(self) -> str:
        env = f", else ${self.root_env}" if self.root_env else ""
        return f"{LAYOUT}\n  (ROOT = the root param / --root{env})"

    def _index(self) -> dict[str, Path]:
        if self._images is None:
            root = require_dir(self.root, self.name, self._layout(), DOWNLOAD)
            image_dir = self._image_dir(root)
            if self.with_labels:
                require_dir(root / LABEL_DIR / self.split, self.name, self._layout(), DOWNLOAD)
            paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            self._images = {p.stem: p for p in paths}
        return self._images

    def ids(self) -> list[str]:
        return list(self._index())

    def _image(self, image_id: str) -> Path:
        try:
            return self._index()[image_id]
        except KeyError:
            raise ConfigError(f"coco: no image {image_id!r} in {self.root}", "use an id from ids()") from None

    def label_path(self, image_id: str) -> Path:
        self._image(image_id)
        assert self.root is not None
        return self.root / LABEL_DIR / self.split / f"{image_id}.png"

    def files(self, image_id: str) -> list[Path]:
        image = self._image(image_id)
        return [image, self.label_path(image_id)] if self.with_labels else [image]

    def read_labels(self, image_id: str) -> np.ndarray:
        """Native-size labels of ``image_id`` in the chosen class set (uint8, 255 = ignore)."""
        path = self.label_path(image_id)
        if not path.is_file():
            raise DatasetNotFoundError(f"coco: label map {path} not found",
                                       f"unzip stuffthingmaps_trainval2017.zip into the root\n{LAYOUT}")
        return apply_lut(read_label(path), self._lut)

    def load(self, image_id: str) -> Sample:
        return load_labelled(self, image_id, self._image(image_id), "stuffthingmap",
                             read=self._raw_labels, split=self._class_sets)

    def _raw_labels(self, image_id: str) -> np.ndarray:
        path = self.label_path(image_id)
        if not path.is_file():
            raise DatasetNotFoundError(f"coco: label map {path} not found",
                                       f"unzip stuffthingmaps_trainval2017.zip into the root\n{LAYOUT}")
        return read_label(path)

    def _class_sets(self, raw: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Resized raw ids → (labels in the chosen class set, the raw ids as ``cocostuff182``):
        every COCO-Stuff class set derives from the raw ids."""
        alt = {} if self.classes == "raw182" else {COCO_STUFF_182.name: apply_lut(raw, COCO_RAW_TO_RAW182)}
        return apply_lut(raw, self._lut), alt

    def protocol(self) -> dict[str, Any]:
        return {"dataset": self.name, "split": self.split,
                "class_set": self.class_set.name if self.with_labels and self.class_set else None,
                "labels": f"stuffthingmaps->{self.classes}" if self.with_labels else None,
                **self.resolution.protocol()}
