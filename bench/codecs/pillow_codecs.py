"""Classical codecs through Pillow: JPEG (libjpeg-turbo), WebP (libwebp), JPEG 2000 (OpenJPEG).

Each codec sends one byte part, ``{"image": <file bytes>}``, so bpp counts the whole
file (headers included). Decoding returns the H×W×3 uint8 RGB image stored in the file.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import PIL
from PIL import Image, features

from ..errors import CodecError, ConfigError
from .base import Codec, Encoded, RateKnob, Semantics, check_rgb_uint8

IMAGE_PART = "image"

# 4:2:0 is the libjpeg default; 4:4:4 keeps full-resolution chroma.
_JPEG_SUBSAMPLING = {"420": "4:2:0", "422": "4:2:2", "444": "4:4:4"}


def _libjpeg_version() -> str:
    turbo = features.version_feature("libjpeg_turbo")
    return f"libjpeg-turbo-{turbo}" if turbo else f"libjpeg-{features.version('jpg')}"


def image_part(parts: Mapping[str, bytes], codec: str) -> bytes:
    """The single ``"image"`` part of a one-part codec, or :class:`CodecError`."""
    data = parts.get(IMAGE_PART)
    if not data:
        raise CodecError(
            f"{codec}: no {IMAGE_PART!r} part to decode (got parts {sorted(parts)})",
            f"pass the parts returned by {codec}.encode unchanged",
        )
    return bytes(data)


def rgb_array(image: Image.Image | np.ndarray, codec: str) -> np.ndarray:
    """A decoded picture as a contiguous H×W×3 uint8 RGB array."""
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    else:
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        if array.ndim == 3 and array.shape[2] == 4:
            array = array[:, :, :3]
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise CodecError(f"{codec}: decoder returned {array.dtype} {array.shape}, not 8-bit RGB",
                         "encode 8-bit RGB images only")
    return np.ascontiguousarray(array)


def pillow_encode(image: np.ndarray, fmt: str, codec: str, **options: Any) -> bytes:
    """Encode an RGB uint8 array with Pillow's ``fmt`` writer into file bytes."""
    check_rgb_uint8(image)
    buf = io.BytesIO()
    try:
        Image.fromarray(np.ascontiguousarray(image)).save(buf, fmt, **options)
    except (OSError, ValueError) as err:
        raise CodecError(f"{codec}: Pillow {fmt} encoder failed: {err}",
                         f"check the {codec} rate and params, and `python -m PIL.report`") from None
    return buf.getvalue()


def pillow_decode(data: bytes, fmt: str, codec: str) -> np.ndarray:
    """Decode file bytes written by :func:`pillow_encode`; the format must be ``fmt``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != fmt:
                raise CodecError(f"{codec}: expected a {fmt} file, got {im.format}",
                                 f"decode bytes produced by {codec}.encode")
            im.load()
            return rgb_array(im, codec)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise CodecError(f"{codec}: cannot decode {fmt} data: {err}", "the bytes are truncated or corrupt") from None


class _PillowCodec(Codec):
    """Shared encode/decode of one-file Pillow codecs; subclasses give the save options."""

    parallel_safe = True  # pure CPU work / subprocesses: may run in worker processes

    pillow_format: ClassVar[str]

    def save_options(self, rate: Any, image: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        self.rate_knob.check(rate)
        data = pillow_encode(image, self.pillow_format, self.name, **self.save_options(rate, image))
        return Encoded({IMAGE_PART: data})

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        return pillow_decode(image_part(parts, self.name), self.pillow_format, self.name)


class JpegCodec(_PillowCodec):
    """Baseline JPEG from Pillow's libjpeg(-turbo). Knob: quality 1–100 (higher = more bits).

    Params: ``subsampling`` "420" (libjpeg default) | "422" | "444"; ``optimize``
    (optimised Huffman tables, default True).
    """

    name = "jpeg"
    version = f"pillow-{PIL.__version__}/{_libjpeg_version()}"
    rate_knob = RateKnob("quality", (5, 10, 20, 35, 50, 75, 90), higher_is_better=True,
                         minimum=1, maximum=100)
    pillow_format = "JPEG"

    def __init__(self, subsampling: str = "420", optimize: bool = True) -> None:
        subsampling = str(subsampling)
        if subsampling not in _JPEG_SUBSAMPLING:
            raise ConfigError(f"jpeg: subsampling {subsampling!r} is not one of {sorted(_JPEG_SUBSAMPLING)}",
                              "set params.subsampling to \"420\", \"422\" or \"444\" in codecs/jpeg.yaml")
        self.subsampling = subsampling
        self.optimize = bool(optimize)

    def params(self) -> dict[str, Any]:
        return {"subsampling": self.subsampling, "optimize": self.optimize}

    def save_options(self, rate: Any, image: np.ndarray) -> dict[str, Any]:
        return {"quality": int(rate), "subsampling": _JPEG_SUBSAMPLING[self.subsampling],
                "optimize": self.optimize}


class WebpCodec(_PillowCodec):
    """Lossy WebP (VP8 intra) from Pillow's libwebp. Knob: quality 1–100 (higher = more bits).

    Params: ``method`` 0 (fast) – 6 (slowest, best; default).
    """

    name = "webp"
    version = f"pillow-{PIL.__version__}/libwebp-{features.version('webp')}"
    rate_knob = RateKnob("quality", (5, 10, 20, 35, 50, 75, 90), higher_is_better=True,
                         minimum=0, maximum=100)
    pillow_format = "WEBP"

    def __init__(self, method: int = 6) -> None:
        if int(method) not in range(7):
            raise ConfigError(f"webp: method {method} is not in 0..6", "set params.method in codecs/webp.yaml")
        self.method = int(method)

    def params(self) -> dict[str, Any]:
        return {"method": self.method}

    def save_options(self, rate: Any, image: np.ndarray) -> dict[str, Any]:
        return {"quality": int(rate), "method": self.method, "lossless": False}


class Jpeg2000Codec(_PillowCodec):
    """JPEG 2000 from Pillow's OpenJPEG: irreversible 9/7 wavelet with the colour
    transform on (``mct=1``; without it PSNR drops by ~3–4 dB at equal rate).

    Knob: target rate in bpp (higher = more bits), given to OpenJPEG as one quality
    layer with compression ratio 24 / bpp. The achieved bpp (raw .j2k codestream, no
    JP2 box) lands within a few percent of the target.
    """

    name = "jpeg2000"
    version = f"pillow-{PIL.__version__}/openjpeg-{features.version('jpg_2000')}"
    rate_knob = RateKnob("bpp", (0.05, 0.1, 0.2, 0.4, 0.8, 1.6), higher_is_better=True, unit="bpp",
                         minimum=0.005, maximum=24.0)
    pillow_format = "JPEG2000"

    def params(self) -> dict[str, Any]:
        return {"irreversible": True, "mct": 1, "container": "j2k", "quality_mode": "rates"}

    def save_options(self, rate: Any, image: np.ndarray) -> dict[str, Any]:
        return {"quality_mode": "rates", "quality_layers": [24.0 / float(rate)],
                "irreversible": True, "mct": 1, "no_jp2": True}
