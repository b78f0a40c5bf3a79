"""HEIC (HEVC intra in a HEIF file) through ``pillow-heif`` (libheif + x265, decoded by libde265).

A pip-installable HEVC-intra stand-in for BPG when ``bpgenc`` is not built. It is NOT
BPG: a different HEVC encoder (x265 rather than BPG's bundled one), HEIF container
overhead, and libheif's quality→QP mapping rather than BPG's quantiser.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import CodecError, ConfigError, UnavailableError
from .base import Codec, Encoded, RateKnob, Requirement, Semantics, check_rgb_uint8
from .pillow_codecs import IMAGE_PART, image_part, rgb_array


def _optional_module(name: str) -> Any:
    """The module ``name``, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


pillow_heif: Any = _optional_module("pillow_heif")  # optional dependency: reported by requirements()

HOW_TO_GET = "pip install pillow-heif (wheels bundle libheif, x265 and libde265)"


def _version() -> str:
    if pillow_heif is None:
        return "pillow-heif-missing"
    info = pillow_heif.libheif_info()
    x265 = info.get("encoders", {}).get("x265", "x265-missing").split("(")[-1].rstrip(")")
    return f"pillow-heif-{pillow_heif.__version__}/libheif-{pillow_heif.libheif_version()}/x265-{x265}"


class HeicCodec(Codec):
    """HEVC intra (x265) in HEIF at 8 bits — a stand-in for BPG, not BPG.

    Knob: libheif ``quality`` 1–100 (higher = more bits). Params: ``chroma`` "444"
    (default, like the bpg card) | "420" | "422".
    """

    parallel_safe = True  # pure CPU work / subprocesses: may run in worker processes

    name = "heic"
    version = _version()
    rate_knob = RateKnob("quality", (5, 10, 20, 30, 40, 50, 60), higher_is_better=True,
                         minimum=1, maximum=100)

    def __init__(self, chroma: str | int = "444") -> None:
        chroma = str(chroma)
        if chroma not in ("444", "420", "422"):
            raise ConfigError(f"heic: chroma {chroma!r} is not \"444\", \"420\" or \"422\"",
                              "set params.chroma in codecs/heic.yaml")
        self.chroma = chroma

    def requirements(self) -> list[Requirement]:
        if pillow_heif is None:
            return [Requirement("package", "pillow-heif", False, HOW_TO_GET)]
        has_x265 = "x265" in pillow_heif.libheif_info().get("encoders", {})
        detail = f"pillow-heif {pillow_heif.__version__}" if has_x265 else f"libheif has no x265 encoder; {HOW_TO_GET}"
        return [Requirement("package", "pillow-heif", has_x265, detail)]

    def params(self) -> dict[str, Any]:
        return {"chroma": self.chroma, "bit_depth": 8, "encoder": "x265"}

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        self._require()
        check_rgb_uint8(image)
        self.rate_knob.check(rate)
        h, w = image.shape[:2]
        buf = io.BytesIO()
        try:
            heif = pillow_heif.from_bytes("RGB", (w, h), np.ascontiguousarray(image).tobytes())
            heif.save(buf, quality=int(rate), chroma=int(self.chroma))
        except (RuntimeError, ValueError) as err:
            raise CodecError(f"heic: encoder failed at quality={rate}: {err}", HOW_TO_GET) from None
        return Encoded({IMAGE_PART: buf.getvalue()})

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        self._require()
        data = image_part(parts, self.name)
        try:
            heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
            return rgb_array(heif.to_pillow(), self.name)
        except (RuntimeError, ValueError, OSError) as err:
            raise CodecError(f"heic: cannot decode: {err}", "the bytes are truncated or corrupt") from None

    def _require(self) -> None:
        if pillow_heif is None:
            raise UnavailableError("heic: pillow-heif is not installed", HOW_TO_GET)
