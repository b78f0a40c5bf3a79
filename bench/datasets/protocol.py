"""What every dataset adapter shares: where its root is and at which resolution it is evaluated."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

from bench.modes import Fit

from ..errors import BenchError, ConfigError, DatasetNotFoundError
from .base import read_rgb
from .resample import resampler

FITS: tuple[str, ...] = get_args(Fit)


def resolve_root(root: str | Path | None, env: str | None, default: str | Path | None,
                 fetched: str | None = None) -> Path | None:
    """The dataset root: ``root`` if given, else ``$env`` if set, else ``default``, else the
    folder ``bench fetch <fetched>`` fills (``$BENCH_DATA_DIR/datasets/<fetched>``) when it exists
    (else None). ``~`` and ``$VARS`` are expanded.
    """
    for candidate in (root, os.environ.get(env) if env else None, default):
        if candidate not in (None, ""):
            return Path(os.path.expandvars(str(candidate))).expanduser()
    if fetched:
        from bench.runtime.fetch import dataset_dir

        return dataset_dir(fetched)
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
    centred region of aspect W/H, then resizes. ``image_resample`` / ``label_resample``
    name the rules of :mod:`bench.datasets.resample` (default: PIL bilinear / PIL nearest).
    """

    height: int | None = None
    width: int | None = None
    fit: Fit = "resize"
    image_resample: str = "bilinear"
    label_resample: str = "nearest"

    @classmethod
    def from_params(cls, dataset: str, height: Any, width: Any, fit: Fit = "resize",
                    image_resample: str = "bilinear", label_resample: str = "nearest") -> Resolution:
        h, w = _size(dataset, "height", height), _size(dataset, "width", width)
        if (h is None) != (w is None):
            raise ConfigError(f"{dataset}: height={height!r} and width={width!r}: give both or neither",
                              "set both height and width, or neither for the native size")
        if fit not in FITS:
            raise ConfigError(f"{dataset}: fit={fit!r} is not one of {FITS}", f"use one of {', '.join(FITS)}")
        resampler("image", image_resample, dataset)
        resampler("label", label_resample, dataset)
        return cls(h, w, fit, image_resample, label_resample)

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
        """H×W×3 uint8 → the evaluated image (``image_resample`` rule)."""
        if self.native:
            return image
        assert self.height is not None and self.width is not None
        resize = resampler("image", self.image_resample, "dataset")[0]
        return np.ascontiguousarray(resize(np.ascontiguousarray(self._crop(image)), self.height, self.width))

    def labels(self, labels: np.ndarray) -> np.ndarray:
        """H×W uint8 class ids → the evaluated label map (``label_resample`` rule; never new ids)."""
        if self.native:
            return labels
        assert self.height is not None and self.width is not None
        resize = resampler("label", self.label_resample, "dataset")[0]
        return np.ascontiguousarray(resize(np.ascontiguousarray(self._crop(labels)), self.height, self.width))

    def protocol(self) -> dict[str, Any]:
        if self.native:
            return {"height": None, "width": None, "resize": "native"}
        return {"height": self.height, "width": self.width, "fit": self.fit,
                "image_resize": resampler("image", self.image_resample, "dataset")[1],
                "label_resize": resampler("label", self.label_resample, "dataset")[1]}


def read_image_file(path: Path, dataset: str, info: dict[str, Any] | None = None) -> np.ndarray:
    """H×W×3 uint8 RGB (:func:`~bench.datasets.base.read_rgb`; ``info`` gets what was
    converted); a missing or undecodable file raises a :class:`BenchError`."""
    if not path.is_file():
        raise DatasetNotFoundError(f"{dataset}: image {path} not found",
                                   "check the dataset root; the file list may have changed")
    try:
        return read_rgb(path, info)
    except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for truncated/unknown files
        raise BenchError(f"{dataset}: cannot decode image {path}: {err}",
                         "replace or remove the corrupt file") from None


def source_note(info: dict[str, Any]) -> dict[str, Any]:
    """``{"source_image": info}`` for sample.meta when the file needed more than an 8-bit
    RGB/L/P read (16 bits, alpha, EXIF orientation, CMYK…), else {}."""
    plain = set(info) <= {"mode"} and info.get("mode") in ("RGB", "L", "P", "1", None)
    return {} if plain else {"source_image": dict(info)}
