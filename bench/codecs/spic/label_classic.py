"""The label-map coder interface, its input check, and the classical lossless coders:
``png`` (8-bit grayscale, zlib level 9 with Pillow's ``optimize``) and ``jpegxl`` (libjxl
modular mode through imagecodecs, effort 9). The run coder: :mod:`bench.codecs.spic.labelcoder`."""

from __future__ import annotations

import io
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ...errors import CodecError, ConfigError


class LabelCoder(Protocol):
    name: str

    def encode(self, labels: np.ndarray) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


def check_labels(labels: np.ndarray) -> np.ndarray:
    """Return ``labels`` as a contiguous H×W uint8 array or raise :class:`CodecError`."""
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.dtype != np.uint8 or arr.size == 0:
        raise CodecError(f"label map must be a non-empty H×W uint8 array, got {arr.dtype} {arr.shape}",
                         "pass class ids as uint8 (255 = void)")
    return np.ascontiguousarray(arr)


class PngLabelCoder:
    """PNG (8-bit grayscale, Pillow ``optimize=True`` → zlib level 9)."""

    name = "png"

    def encode(self, labels: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(check_labels(labels), mode="L").save(buf, "PNG", optimize=True)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                return np.asarray(im, dtype=np.uint8).copy()
        except OSError as err:
            raise CodecError(f"label map PNG is unreadable: {err}", "pass the bytes from encode unchanged") from None

    def describe(self) -> dict[str, Any]:
        import PIL

        return {"name": self.name, "library": f"pillow-{PIL.__version__}", "settings": "L, optimize"}


class JpegxlLabelCoder:
    """JPEG XL lossless (modular), ``effort`` 1–9 (default 9, the slowest and smallest)."""

    name = "jpegxl"

    def __init__(self, effort: int = 9) -> None:
        self.effort = int(effort)

    @staticmethod
    def available() -> bool:
        try:
            import imagecodecs
        except ImportError:
            return False
        return bool(getattr(getattr(imagecodecs, "JPEGXL", None), "available", False))

    def _require(self):
        if not self.available():
            raise ConfigError("label coder 'jpegxl' needs imagecodecs built with JPEG XL",
                              "pip install imagecodecs, or use label_coder: runs / png")
        import imagecodecs

        return imagecodecs

    def encode(self, labels: np.ndarray) -> bytes:
        ic = self._require()
        return bytes(ic.jpegxl_encode(check_labels(labels), lossless=True, effort=self.effort, numthreads=1))

    def decode(self, data: bytes) -> np.ndarray:
        ic = self._require()
        try:
            arr = np.asarray(ic.jpegxl_decode(data, numthreads=1))
        except Exception as err:  # noqa: BLE001 - imagecodecs raises its own JpegxlError
            raise CodecError(f"label map JPEG XL is unreadable: {err}", "pass the bytes from encode unchanged") from None
        return np.ascontiguousarray(arr.reshape(arr.shape[:2]).astype(np.uint8))

    def describe(self) -> dict[str, Any]:
        version = "missing"
        if self.available():
            import imagecodecs

            version = f"imagecodecs-{imagecodecs.__version__}/{imagecodecs.jpegxl_version()}"
        return {"name": self.name, "library": version, "settings": f"lossless, effort {self.effort}"}
