"""The clean reference row: the evaluated image itself, sent as a lossless PNG.

Run beside the codecs, it puts on every table the metrics' sanity values (PSNR inf with
every image identical, LPIPS 0, FID ≈ 0) and the segmenter's mIoU on clean images — the
ceiling no codec can beat under the same protocol. Its bpp is that of the lossless PNG
file (Pillow, zlib level 9), i.e. what sending the image without loss
costs, headers included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import PIL
from PIL import features

from ..errors import ConfigError
from .base import Codec, Encoded, RateKnob, Semantics
from .pillow_codecs import IMAGE_PART, image_part, pillow_decode, pillow_encode


class OriginalCodec(Codec):
    """Identity codec: reconstruction = the evaluated image, bytes = its PNG file.

    Knob: one rate point, ``lossless``. Params: ``compress_level`` 0–9 (zlib; default 9).
    """

    name = "original"
    version = f"pillow-{PIL.__version__}/zlib-{features.version('zlib')}"
    rate_knob = RateKnob("png", ("lossless",), higher_is_better=True)
    parallel_safe = True

    def __init__(self, compress_level: int = 9) -> None:
        if int(compress_level) not in range(10):
            raise ConfigError(f"original: compress_level {compress_level} is not in 0..9",
                              "set params.compress_level in codecs/original.yaml")
        self.compress_level = int(compress_level)

    def params(self) -> dict[str, Any]:
        return {"format": "png", "compress_level": self.compress_level}

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        if rate != "lossless":
            raise ConfigError(f"original: rate {rate!r} is not 'lossless'", "the original has one rate point")
        return Encoded({IMAGE_PART: pillow_encode(image, "PNG", self.name, compress_level=self.compress_level)})

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        return pillow_decode(image_part(parts, self.name), "PNG", self.name)
