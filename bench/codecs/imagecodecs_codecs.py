"""AVIF (libavif/AV1 intra) and JPEG XL (libjxl) through the ``imagecodecs`` package.

Both send one byte part, ``{"image": <file bytes>}``. When ``imagecodecs`` or the
codec inside it is missing, :meth:`requirements` reports it and the runner skips the
codec under ``--codecs all``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..errors import CodecError, ConfigError, UnavailableError
from .base import Codec, Encoded, RateKnob, Requirement, Semantics, check_rgb_uint8
from .pillow_codecs import IMAGE_PART, image_part, rgb_array

try:
    import imagecodecs
except ImportError:  # optional dependency: reported by requirements()
    imagecodecs = None

_HOW_TO_GET = "pip install imagecodecs (wheels bundle libavif and libjxl)"


def _library_version(func: str) -> str:
    """``"libavif 1.4.0"`` → ``"libavif-1.4.0"``; "missing" without imagecodecs."""
    if imagecodecs is None or not hasattr(imagecodecs, func):
        return "missing"
    try:
        return str(getattr(imagecodecs, func)()).replace(" ", "-")
    except Exception:  # a stub raises when the codec was not built in
        return "missing"


def _package_version() -> str:
    return f"imagecodecs-{imagecodecs.__version__}" if imagecodecs is not None else "imagecodecs-missing"


class _ImagecodecsCodec(Codec):
    """Shared plumbing: availability check, one-part encode/decode, error mapping."""

    parallel_safe = True  # pure CPU work / subprocesses: may run in worker processes

    codec_attr: ClassVar[str]  # e.g. "AVIF": imagecodecs.AVIF.available

    def available(self) -> bool:
        return imagecodecs is not None and bool(getattr(getattr(imagecodecs, self.codec_attr, None),
                                                        "available", False))

    def requirements(self) -> list[Requirement]:
        if imagecodecs is None:
            return [Requirement("package", "imagecodecs", False, _HOW_TO_GET)]
        found = self.available()
        detail = (f"imagecodecs {imagecodecs.__version__} with {self.codec_attr}" if found
                  else f"imagecodecs {imagecodecs.__version__} was built without {self.codec_attr}; {_HOW_TO_GET}")
        return [Requirement("package", f"imagecodecs[{self.codec_attr}]", found, detail)]

    def _require(self) -> None:
        if not self.available():
            raise UnavailableError(f"{self.name}: imagecodecs with {self.codec_attr} is not available",
                                   _HOW_TO_GET)

    def _encode_bytes(self, image: np.ndarray, rate: Any) -> bytes:
        raise NotImplementedError

    def _decode_array(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        self._require()
        check_rgb_uint8(image)
        self.rate_knob.check(rate)
        try:
            data = bytes(self._encode_bytes(np.ascontiguousarray(image), rate))
        except (RuntimeError, ValueError) as err:
            raise CodecError(f"{self.name}: encoder failed at {self.rate_knob.name}={rate}: {err}",
                             f"check the rate and params in codecs/{self.name}.yaml") from None
        return Encoded({IMAGE_PART: data})

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        self._require()
        data = image_part(parts, self.name)
        try:
            array = self._decode_array(data)
        except (RuntimeError, ValueError) as err:
            raise CodecError(f"{self.name}: cannot decode: {err}", "the bytes are truncated or corrupt") from None
        return rgb_array(array, self.name)


class AvifCodec(_ImagecodecsCodec):
    """AVIF (AV1 intra, libavif + libaom) at 8 bits. Knob: quality 0–100 (higher = more bits;
    100 = lossless). Params: ``chroma`` "444" (default) | "420"; ``speed`` 0 (slowest) – 10
    (default 6, libavif's default)."""

    name = "avif"
    version = f"{_package_version()}/{_library_version('avif_version')}"
    rate_knob = RateKnob("quality", (10, 20, 35, 50, 65, 80, 90), higher_is_better=True,
                         minimum=0, maximum=100)
    codec_attr = "AVIF"

    def __init__(self, chroma: str = "444", speed: int = 6) -> None:
        chroma = str(chroma)
        if chroma not in ("444", "420"):
            raise ConfigError(f"avif: chroma {chroma!r} is not \"444\" or \"420\"",
                              "set params.chroma in codecs/avif.yaml")
        if int(speed) not in range(11):
            raise ConfigError(f"avif: speed {speed} is not in 0..10", "set params.speed in codecs/avif.yaml")
        self.chroma, self.speed = chroma, int(speed)

    def params(self) -> dict[str, Any]:
        return {"chroma": self.chroma, "speed": self.speed, "bitdepth": 8}

    def _encode_bytes(self, image: np.ndarray, rate: Any) -> bytes:
        fmt = imagecodecs.AVIF.PIXEL_FORMAT
        pixelformat = fmt.YUV444 if self.chroma == "444" else fmt.YUV420
        return imagecodecs.avif_encode(image, level=int(rate), speed=self.speed, bitspersample=8,
                                       pixelformat=pixelformat, numthreads=1)

    def _decode_array(self, data: bytes) -> np.ndarray:
        return imagecodecs.avif_decode(data, numthreads=1)


class JpegxlCodec(_ImagecodecsCodec):
    """JPEG XL (libjxl, VarDCT). Knob: butteraugli ``distance`` 0.1–25 (LOWER = more bits and
    higher quality; 1.0 ≈ visually lossless). Params: ``effort`` 1–9 (default 7, libjxl's)."""

    name = "jpegxl"
    version = f"{_package_version()}/{_library_version('jpegxl_version')}"
    rate_knob = RateKnob("distance", (12.0, 8.0, 5.0, 3.0, 2.0, 1.0, 0.5), higher_is_better=False,
                         minimum=0.1, maximum=25.0)
    codec_attr = "JPEGXL"

    def __init__(self, effort: int = 7) -> None:
        if int(effort) not in range(1, 10):
            raise ConfigError(f"jpegxl: effort {effort} is not in 1..9", "set params.effort in codecs/jpegxl.yaml")
        self.effort = int(effort)

    def params(self) -> dict[str, Any]:
        return {"effort": self.effort}

    def _encode_bytes(self, image: np.ndarray, rate: Any) -> bytes:
        return imagecodecs.jpegxl_encode(image, distance=float(rate), effort=self.effort, numthreads=1)

    def _decode_array(self, data: bytes) -> np.ndarray:
        return imagecodecs.jpegxl_decode(data, numthreads=1)
