"""Any directory of images, without labels (also the Kodak card).

Also holds the small helpers the other adapters share: root resolution
(param → env variable → card default) and the evaluated resolution
(:class:`Resolution`: native, or resize / center-crop-and-resize to H×W pixels).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BenchError, ConfigError, DatasetNotFoundError
from .base import Dataset, Sample, read_rgb, require_dir, resize_image, resize_labels

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
FITS: tuple[str, ...] = ("resize", "center_crop")


def resolve_root(root: str | Path | None, env: str | None, default: str | Path | None) -> Path | None:
    """The dataset root: ``root`` if given, else ``$env`` if set, else ``default`` (else None).

    ``~`` and ``$VARS`` are expanded.
    """
    for candidate in (root, os.environ.get(env) if env else None, default):
        if candidate not in (None, ""):
            return Path(os.path.expandvars(str(candidate))).expanduser()
    return None


def _size(dataset: str, key: str, value: Any) -> int | None:
    if value is None or value == 0 or (isinstance(value, str) and value.strip().lower() in ("", "native", "none")):
        return None
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = -1
    if size <= 0 or (isinstance(value, float) and value != size):
        raise ConfigError(f"{dataset}: {key}={value!r} is not a positive integer",
                          f"give {key} in pixels (e.g. 256), or 'native' / 0 for the native size")
    return size


@dataclass(frozen=True)
class Resolution:
    """Size of the evaluated images in pixels; ``height``/``width`` None = native size.

    ``fit="resize"`` resizes the whole image to H×W (aspect may change, as the seeds do
    for Cityscapes 1024×2048 → 256×512); ``fit="center_crop"`` first crops the largest
    centred region of aspect W/H, then resizes. Images: bilinear (PIL); labels: nearest.
    """

    height: int | None = None
    width: int | None = None
    fit: str = "resize"

    @classmethod
    def from_params(cls, dataset: str, height: Any, width: Any, fit: str = "resize") -> "Resolution":
        h, w = _size(dataset, "height", height), _size(dataset, "width", width)
        if (h is None) != (w is None):
            raise ConfigError(f"{dataset}: height={height!r} and width={width!r}: give both or neither",
                              "set both height and width, or neither for the native size")
        if fit not in FITS:
            raise ConfigError(f"{dataset}: fit={fit!r} is not one of {FITS}", f"use one of {', '.join(FITS)}")
        return cls(h, w, fit)

    @property
    def native(self) -> bool:
        return self.height is None

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, crop height, crop width) applied before the resize, in source pixels."""
        if self.native or self.fit == "resize":
            return 0, 0, height, width
        assert self.height is not None and self.width is not None
        aspect = self.width / self.height
        if width / height > aspect:
            ch, cw = height, max(1, round(height * aspect))
        else:
            ch, cw = max(1, round(width / aspect)), width
        return (height - ch) // 2, (width - cw) // 2, ch, cw

    def _crop(self, array: np.ndarray) -> np.ndarray:
        top, left, ch, cw = self.crop_box(array.shape[0], array.shape[1])
        return array[top:top + ch, left:left + cw]

    def image(self, image: np.ndarray) -> np.ndarray:
        """H×W×3 uint8 → the evaluated image (bilinear)."""
        if self.native:
            return image
        assert self.height is not None and self.width is not None
        return np.ascontiguousarray(resize_image(np.ascontiguousarray(self._crop(image)), self.height, self.width))

    def labels(self, labels: np.ndarray) -> np.ndarray:
        """H×W uint8 class ids → the evaluated label map (nearest; never new ids)."""
        if self.native:
            return labels
        assert self.height is not None and self.width is not None
        return np.ascontiguousarray(resize_labels(np.ascontiguousarray(self._crop(labels)), self.height, self.width))

    def protocol(self) -> dict[str, Any]:
        if self.native:
            return {"height": None, "width": None, "resize": "native"}
        return {"height": self.height, "width": self.width, "fit": self.fit,
                "image_resize": "bilinear(PIL)", "label_resize": "nearest"}


def read_image_file(path: Path, dataset: str) -> np.ndarray:
    """H×W×3 uint8 RGB; a missing or undecodable file raises a :class:`BenchError`."""
    if not path.is_file():
        raise DatasetNotFoundError(f"{dataset}: image {path} not found",
                                   "check the dataset root; the file list may have changed")
    try:
        return read_rgb(path)
    except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for truncated/unknown files
        raise BenchError(f"{dataset}: cannot decode image {path}: {err}",
                         "replace or remove the corrupt file") from None


class FolderDataset(Dataset):
    """Every image file under ``root`` (sorted by relative path), no labels.

    Ids are the relative paths without suffix (``kodim01``, ``sub/img``); when two files
    differ only by suffix, both keep their suffix. Files are only opened by :meth:`load`.
    """

    name = "folder"
    class_set = None

    def __init__(self, root: str | Path | None = None, *, recursive: bool = False,
                 height: Any = None, width: Any = None, fit: str = "resize",
                 root_env: str | None = None, default_root: str | Path | None = None,
                 name: str = "folder") -> None:
        self.name = name  # type: ignore[misc]  # a card may name its folder (e.g. kodak)
        self.root_env = root_env
        self.root = resolve_root(root, root_env, default_root)
        self.recursive = bool(recursive)
        self.resolution = Resolution.from_params(name, height, width, fit)
        self._paths: dict[str, Path] | None = None

    def _layout(self) -> str:
        env = f" (or set ${self.root_env})" if self.root_env else ""
        deep = "**/" if self.recursive else ""
        return f"  ROOT{env}/{deep}*.{{{','.join(s[1:] for s in IMAGE_SUFFIXES)}}}"

    def _index(self) -> dict[str, Path]:
        if self._paths is None:
            root = require_dir(self.root, self.name, self._layout(), "any directory of images")
            pattern = root.rglob("*") if self.recursive else root.glob("*")
            files = sorted(p for p in pattern if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(root).parts))
            rel = [p.relative_to(root).as_posix() for p in files]
            stems = [r[: -len(Path(r).suffix)] for r in rel]
            dup = {s for s, n in Counter(stems).items() if n > 1}
            self._paths = {(r if s in dup else s): p for r, s, p in zip(rel, stems, files)}
        return self._paths

    def ids(self) -> list[str]:
        return list(self._index())

    def _path(self, image_id: str) -> Path:
        try:
            return self._index()[image_id]
        except KeyError:
            raise ConfigError(f"{self.name}: no image with id {image_id!r} under {self.root}",
                              "use an id from ids()") from None

    def files(self, image_id: str) -> list[Path]:
        return [self._path(image_id)]

    def load(self, image_id: str) -> Sample:
        path = self._path(image_id)
        raw = read_image_file(path, self.name)
        return Sample(image_id, self.resolution.image(raw), None,
                      {"path": str(path), "native_size": [int(raw.shape[0]), int(raw.shape[1])]})

    def protocol(self) -> dict[str, Any]:
        return {"dataset": self.name, "class_set": None, "labels": None, "recursive": self.recursive,
                **self.resolution.protocol()}
