"""Cityscapes (Cordts et al. 2016) in its official directory layout.

Default protocol (the card's params, recorded as protocol "card"): the ``val`` split (500
images), images resized 1024×2048 → 256×512 (H×W) with PIL bilinear, labels with PIL
nearest, 19 trainIds (255 = ignore). That image rule is SQ-GAN's; it is NOT SPIC's (SPIC
halves with PIL BOX, see :mod:`bench.datasets.resample`), and SQ-GAN resizes its labels
with torch's nearest, not PIL's. The papers' exact protocols are the named presets of the
card (``protocols:`` in datasets/cityscapes.yaml, ``bench run --protocol sqgan|spic|iwai|native``;
:mod:`bench.datasets.presets`).
Labels are read from the gtFine ``*_labelIds.png`` and mapped to trainIds by the official
table (:data:`bench.datasets.classes.CITYSCAPES_LABELID_TO_TRAINID`); ``classes="labelid34"``
keeps all 34 label ids (Iwai et al.).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.modes import Fit

from ..errors import ConfigError, DatasetNotFoundError
from .base import Dataset, Sample, read_label, require_dir
from .classes import (
    CITYSCAPES_19,
    CITYSCAPES_34,
    CITYSCAPES_LABELID_TO_LABELID34,
    CITYSCAPES_LABELID_TO_TRAINID,
    CITYSCAPES_TRAINID_CHECK,
    apply_lut,
)
from .labelled import load_labelled
from .protocol import Resolution, resolve_root

LAYOUT = (
    "  ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png\n"
    "  ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png"
)
DOWNLOAD = ("https://www.cityscapes-dataset.com/downloads/ (free registration): "
            "leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip, unzipped into ROOT")

IMAGE_SUFFIX = "_leftImg8bit.png"
#: label_file choice → (file suffix, LUT from the file's values to trainIds).
LABEL_FILES: dict[str, str] = {
    "labelIds": "_gtFine_labelIds.png",            # the reference: official label ids 0..33
    "labelTrainIds": "_gtFine_labelTrainIds.png",  # cityscapesscripts createTrainIdLabelImgs
    "trainIds": "_gtFine_trainIds.png",            # SQ-GAN's naming of the same maps
}
CLASS_CHOICES = {"trainid19": CITYSCAPES_19, "labelid34": CITYSCAPES_34}


class CityscapesDataset(Dataset):
    """Cityscapes fine annotations. Ids are ``<city>_<seq>_<frame>`` (e.g. ``frankfurt_000000_000294``).

    Params: ``root`` (else ``$CITYSCAPES_ROOT``, else ``default_root``), ``split``
    (train/val/test), ``height``/``width`` (pixels; None/0 = native 1024×2048),
    ``classes`` ("trainid19" | "labelid34"), ``label_file`` ("labelIds" reference, or the
    equivalent "labelTrainIds"/"trainIds" maps for trainid19), ``labels`` (None = yes
    except for ``test``, whose public gtFine maps are placeholders).
    """

    name = "cityscapes"
    domain = "cityscapes"

    def __init__(self, root: str | Path | None = None, *, split: str = "val", height: Any = 256,
                 width: Any = 512, fit: Fit = "resize", image_resample: str = "bilinear",
                 label_resample: str = "nearest", classes: str = "trainid19",
                 label_file: str = "labelIds", labels: bool | None = None,
                 root_env: str | None = "CITYSCAPES_ROOT", default_root: str | Path | None = None) -> None:
        if classes not in CLASS_CHOICES:
            raise ConfigError(f"cityscapes: classes={classes!r} is not one of {sorted(CLASS_CHOICES)}",
                              "use classes=trainid19 (19 evaluated classes) or labelid34 (all 34 ids)")
        if label_file not in LABEL_FILES:
            raise ConfigError(f"cityscapes: label_file={label_file!r} is not one of {sorted(LABEL_FILES)}",
                              "use label_file=labelIds (the reference)")
        if classes == "labelid34" and label_file != "labelIds":
            raise ConfigError("cityscapes: classes=labelid34 needs the *_gtFine_labelIds.png maps",
                              "use label_file=labelIds")
        self.root_env = root_env
        self.root = resolve_root(root, root_env, default_root, fetched="cityscapes")
        self.split = str(split)
        self.classes = classes
        self.class_set = CLASS_CHOICES[classes]
        self.label_file = label_file
        self.with_labels = (self.split != "test") if labels is None else bool(labels)
        self.resolution = Resolution.from_params(self.name, height, width, fit, image_resample, label_resample)
        if label_file == "labelIds":
            self._lut = CITYSCAPES_LABELID_TO_TRAINID if classes == "trainid19" else CITYSCAPES_LABELID_TO_LABELID34
        else:
            self._lut = CITYSCAPES_TRAINID_CHECK
        self._images: dict[str, tuple[str, Path]] | None = None

    # ------------------------------------------------------------------ files
    def _layout(self) -> str:
        env = f", else ${self.root_env}" if self.root_env else ""
        return f"{LAYOUT}\n  (ROOT = the root param / --root{env})"

    def _index(self) -> dict[str, tuple[str, Path]]:
        """id → (city, image path), built on first use."""
        if self._images is None:
            root = require_dir(self.root, self.name, self._layout(), DOWNLOAD)
            image_dir = require_dir(root / "leftImg8bit" / self.split, self.name, self._layout(), DOWNLOAD)
            if self.with_labels:
                require_dir(root / "gtFine" / self.split, self.name, self._layout(), DOWNLOAD)
            paths = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
            self._images = {p.name[: -len(IMAGE_SUFFIX)]: (p.parent.name, p) for p in paths}
        return self._images

    def ids(self) -> list[str]:
        return list(self._index())

    def _entry(self, image_id: str) -> tuple[str, Path]:
        try:
            return self._index()[image_id]
        except KeyError:
            raise ConfigError(f"cityscapes: no image {image_id!r} in {self.root}/leftImg8bit/{self.split}",
                              "use an id from ids(), e.g. frankfurt_000000_000294") from None

    def label_path(self, image_id: str) -> Path:
        city, _ = self._entry(image_id)
        assert self.root is not None
        return self.root / "gtFine" / self.split / city / f"{image_id}{LABEL_FILES[self.label_file]}"

    def files(self, image_id: str) -> list[Path]:
        image = self._entry(image_id)[1]
        return [image, self.label_path(image_id)] if self.with_labels else [image]

    # ------------------------------------------------------------------ samples
    def read_labels(self, image_id: str) -> np.ndarray:
        """Native-size labels of ``image_id`` in the chosen class set (uint8, 255 = ignore)."""
        path = self.label_path(image_id)
        if not path.is_file():
            other = "" if self.label_file != "labelIds" else (
                "; if you only have *_gtFine_labelTrainIds.png, pass label_file=labelTrainIds")
            raise DatasetNotFoundError(f"cityscapes: label map {path} not found",
                                       f"unzip gtFine_trainvaltest.zip into the root{other}\n{LAYOUT}")
        return apply_lut(read_label(path), self._lut)

    def load(self, image_id: str) -> Sample:
        city, path = self._entry(image_id)
        return load_labelled(self, image_id, path, "gtFine map", {"city": city})

    def protocol(self) -> dict[str, Any]:
        source = None
        if self.with_labels:
            source = f"gtFine{LABEL_FILES[self.label_file][len('_gtFine'):-len('.png')]}->{self.classes}"
        return {"dataset": self.name, "split": self.split,
                "class_set": self.class_set.name if self.with_labels and self.class_set else None,
                "labels": source, **self.resolution.protocol()}
