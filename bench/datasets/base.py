"""The dataset protocol: an ordered list of image ids and a loader per id.

A :class:`Sample` is what the evaluation sees *after* the dataset's protocol (resize,
crop) has been applied: codecs encode exactly ``sample.image`` and metrics compare
against exactly it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, PngImagePlugin

from bench.runtime.weights import sha256_file

from ..errors import ConfigError, DatasetNotFoundError
from .resample import bilinear, nearest_centre


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
    ``alt_labels``: the same ground truth in other class sets, by class-set name (e.g.
    COCO-Stuff's raw ``cocostuff182`` beside merged9 labels), so a segmenter of another
    class set can still be scored against ground truth (see :mod:`bench.metrics.miou`).
    """

    id: str
    image: np.ndarray
    labels: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    alt_labels: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


class Dataset(ABC):
    """Base class of dataset adapters."""

    name: str = "dataset"  # set to the card's name when built from a card
    class_set: ClassSet | None = None
    #: what the images show, compared with a segmenter card's training ``domain``
    #: (``cityscapes``, ``coco-stuff``; None: undeclared, i.e. not any segmenter's domain)
    domain: ClassVar[str | None] = None

    @abstractmethod
    def ids(self) -> list[str]:
        """Image ids in a stable order."""

    @abstractmethod
    def load(self, image_id: str) -> Sample:
        """The sample for ``image_id``; raises on an unreadable file."""

    def get(self, image_id: str) -> Sample:
        """:meth:`load`, with the label map's class set recorded in ``sample.meta["class_set"]``
        and the sha256 of the pixels coded (H×W×3 uint8, C order) in ``sample.meta["image_sha256"]``:
        every row carries it, so a file replaced during a run is seen in its rows."""
        for path in self.files(image_id):  # a FIFO or device named like an image would block the reader
            if path.exists() and not path.is_file():
                raise ConfigError(f"{path} is not a regular file", "keep only image files in the dataset folder")
        sample = self.load(image_id)
        if sample.labels is not None and self.class_set is not None:
            sample.meta.setdefault("class_set", self.class_set.name)
        sample.meta["image_sha256"] = image_sha256(sample.image)
        return sample

    @abstractmethod
    def files(self, image_id: str) -> list[Path]:
        """Source files of one sample (image and labels), for the content hash."""

    def protocol(self) -> dict[str, Any]:
        """Everything that changes what the metrics see (resolution, resizing, classes)."""
        return {"dataset": self.name, "class_set": self.class_set.name if self.class_set else None}

    def content_hash(self, ids: Sequence[str] | None = None) -> str:
        """sha256 over ids, file bytes and the protocol: identifies exactly what was evaluated.
        A file that cannot be read (no permission, a folder, a FIFO) adds its error instead: its
        rows are recorded as failed when it is loaded, the run goes on."""
        h = hashlib.sha256()
        h.update(json.dumps(self.protocol(), sort_keys=True).encode())
        for image_id in ids if ids is not None else self.ids():
            h.update(image_id.encode() + b"\0")
            for path in self.files(image_id):
                try:
                    if Path(path).exists() and not Path(path).is_file():
                        raise IsADirectoryError(0, "not a regular file", str(path))
                    h.update(sha256_file(path).encode())
                except OSError as err:
                    h.update(f"unreadable:{type(err).__name__}".encode())
        return h.hexdigest()


def image_sha256(image: np.ndarray) -> str:
    """sha256 (hex) of an image's shape and pixel bytes in C order."""
    img = np.ascontiguousarray(image)
    return hashlib.sha256(f"{img.dtype.str}{img.shape}".encode() + img.tobytes()).hexdigest()


# A PNG text chunk (tEXt/zTXt/iTXt: captions, XMP, ICC-like metadata) is never used, but Pillow
# refuses a file whose one chunk decompresses to more than 1 MiB ("Decompressed Data Too Large").
# Allow one chunk up to Pillow's own cap on all text of a file (64 MiB): memory stays bounded.
PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY)

#: How :func:`read_rgb` turns any stored image into 8-bit RGB (recorded with each run).
IMAGE_MODE_POLICY: dict[str, str] = {
    "16-bit": "scaled to 8 bits: round(v * 255 / 65535) = (v + 128) // 257 (16-bit PNG RGB/RGBA/LA decoded "
              "by imagecodecs; I;16*, I (clipped to 0..65535) by Pillow); never clipped to white",
    "alpha": "composited on white (LA, RGBA, PA, palette with transparency): what a viewer shows",
    "palette": "expanded through its palette",
    "cmyk": "Pillow's CMYK->RGB (no ICC profile)",
    "exif_orientation": "ignored: pixels are used in stored order, as the label maps and the papers' "
                        "loaders (PIL open + convert) use them; a non-1 tag is noted in sample.meta",
}
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _scale16(values: np.ndarray) -> np.ndarray:
    """uint16-range integers → uint8, rounded: (v + 128) // 257 (exact, no ties)."""
    v = np.clip(values.astype(np.int64), 0, 65535)
    return ((v + 128) // 257).astype(np.uint8)


def _png_bit_depth(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG file from its IHDR, else None."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def max_pixels() -> int | None:
    """The most pixels an image file may have: twice ``PIL.Image.MAX_IMAGE_PIXELS`` (where Pillow
    itself refuses an 8-bit image as a decompression bomb); None when that is set to None."""
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def check_pixels(path: Path | str) -> tuple[int, int]:
    """(width, height) of an image file from its header, read without decoding any pixel; raises
    :class:`ConfigError` when width × height exceeds :func:`max_pixels`, for every mode and bit
    depth (a 16-bit PNG is decoded by imagecodecs, which has no such guard)."""
    limit = max_pixels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:  # reads the header only
                width, height = im.size
        except Image.DecompressionBombError:
            width, height = _png_size(Path(path)) or (0, 0)
            if not width:
                raise ConfigError(f"image {path} is too large to decode (Pillow: decompression bomb)",
                                  "resize it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file") from None
    if limit is not None and width * height > limit:
        raise ConfigError(f"image {path} is {width}x{height} = {width * height:,} pixels, over the limit of "
                          f"{limit:,} (a decompression bomb?); nothing was decoded",
                          "resize it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file")
    return width, height


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a PNG from its IHDR, else None."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite uint8 RGB with uint8 alpha over white, rounded to nearest."""
    a = alpha.astype(np.int64)[..., None]
    return ((rgb.astype(np.int64) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def read_rgb(path: Path, info: dict[str, Any] | None = None) -> np.ndarray:
    """H×W×3 uint8 RGB from an image file, by :data:`IMAGE_MODE_POLICY`.

    An image of more than :func:`max_pixels` pixels is refused before decoding (ConfigError).
    ``info`` (optional) receives what was converted: ``mode`` (Pillow's), ``bits`` (16
    when scaled from 16 bits), ``alpha`` ("on-white") and ``exif_orientation`` (when not 1).
    """
    info = {} if info is None else info
    check_pixels(path)  # before any pixel is decoded, whatever the mode and depth
    depth = _png_bit_depth(path)
    if depth is not None and depth[0] == 16 and depth[1] in (2, 4, 6):  # Pillow would keep the high byte
        import imagecodecs

        raw = imagecodecs.png_decode(Path(path).read_bytes())
        info.update(mode={2: "RGB48", 4: "LA32", 6: "RGBA64"}[depth[1]], bits=16)
        colour = raw[..., :1] if depth[1] == 4 else raw[..., :3]
        rgb = np.ascontiguousarray(np.broadcast_to(_scale16(colour), raw.shape[:2] + (3,)))
        if depth[1] in (4, 6):
            info["alpha"] = "on-white"
            return _on_white(rgb, _scale16(raw[..., -1]))
        return rgb
    with Image.open(path) as im:
        im.load()
        info["mode"] = im.mode
        orientation = im.getexif().get(0x0112, 1)
        if orientation not in (None, 1):
            info["exif_orientation"] = int(orientation)
        if im.mode in _SIXTEEN_BIT:
            info["bits"] = 16
            gray = _scale16(np.asarray(im))
            return np.repeat(gray[..., None], 3, axis=2)
        has_alpha = im.mode in ("LA", "RGBA", "PA", "La", "RGBa") or (
            im.mode in ("P", "L", "RGB") and "transparency" in im.info)
        if has_alpha:
            info["alpha"] = "on-white"
            rgba = np.asarray(im.convert("RGBA"))
            return _on_white(rgba[..., :3], rgba[..., 3])
        rgb8: np.ndarray = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
        return rgb8


def read_label(path: Path) -> np.ndarray:
    """H×W uint8 label ids, read without any colour conversion."""
    check_pixels(path)
    with Image.open(path) as im:
        im.load()
        if im.mode not in ("L", "P", "I", "I;16"):
            raise ConfigError(f"label map {path} has mode {im.mode}", "label maps must be single-channel PNGs")
        labels: np.ndarray = np.asarray(im).astype(np.uint8).copy()
        return labels


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a uint8 RGB image (PIL, as the seeds' loaders do)."""
    return bilinear(image, height, width)


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map (PIL NEAREST; never interpolates class ids)."""
    return nearest_centre(labels, height, width)


def require_dir(path: Path | None, dataset: str, layout: str, where: str) -> Path:
    """Check that a dataset root exists, else raise with the expected layout."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise DatasetNotFoundError(f"{dataset}: dataset root {path} is a file, not a folder",
                                   f"pass --root DIR, the folder that holds the images; expected layout:\n{layout}")
    if path is None or not Path(path).is_dir():
        from bench.runtime.fetch.registry import by_name

        fetch = f"run `bench fetch {dataset}` (datasets are never downloaded implicitly), or " \
            if by_name().get(dataset, None) is not None and by_name()[dataset].kind == "dataset" else ""
        raise DatasetNotFoundError(
            f"{dataset}: dataset root {str(path) if path else '(not set)'} not found",
            f"{fetch}pass --root DIR (or set it in datasets/{dataset}.yaml or the env variable); "
            f"expected layout:\n{layout}\n  download: {where}",
        )
    return Path(path)


def lookup_table(pairs: Iterable[tuple[int, int]], default: int = 255) -> np.ndarray:
    """A 256-entry uint8 lookup table from (source id, target id) pairs."""
    lut = np.full(256, default, dtype=np.uint8)
    for src, dst in pairs:
        lut[src] = dst
    return lut
