"""The codec protocol.

A codec turns a uint8 RGB image (H×W×3, values 0..255) into named byte parts — every
part that a receiver needs (image, label map, side information) — and turns those
parts back into a uint8 RGB image of the same H×W. The harness never looks inside the
bytes: bpp = 8 × Σ len(part) / (H × W) of the evaluated image.
"""

from __future__ import annotations

import math
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bench.modes import RequirementKind

from ..errors import CodecError, ConfigError


@dataclass(frozen=True)
class RateKnob:
    """The one knob that moves a codec along its rate–distortion curve.

    ``values`` are the default rate points. ``higher_is_better`` is True when a larger
    value means more bits / higher quality (JPEG quality), False when it means fewer
    (BPG quantiser). Values are numbers or short strings (e.g. checkpoint tags).
    """

    name: str
    values: tuple[Any, ...]
    higher_is_better: bool
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, text: str) -> Any:
        """Parse a CLI value (``"0.4"``) into the type of the default values."""
        kind = type(self.values[0]) if self.values else str
        try:
            value = kind(text) if kind is not float else float(text)
        except ValueError:
            raise ConfigError(
                f"rate {text!r} is not a valid {self.name} ({kind.__name__})",
                f"give values like {', '.join(map(str, self.values))}",
            ) from None
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        """Refuse a NaN or infinite rate and one outside [minimum, maximum] (ConfigError)."""
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{self.name}={value} is not a finite number",
                              f"give values like {', '.join(map(str, self.values))}")
        if isinstance(value, (int, float)):
            if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum
            ):
                raise ConfigError(
                    f"{self.name}={value} is outside [{self.minimum}, {self.maximum}]",
                    f"pick a value in [{self.minimum}, {self.maximum}]",
                )

    def sorted_by_quality(self, values: Sequence[Any]) -> list[Any]:
        """Rate points from lowest to highest quality."""
        return sorted(values, reverse=not self.higher_is_better)


@dataclass(frozen=True)
class Requirement:
    """Something a codec needs: a binary, a weights file or a Python package."""

    kind: RequirementKind
    name: str
    found: bool
    detail: str  # where it was found, or how to get it


def unmet(component: Any) -> list[Requirement]:
    """The requirements of a codec, metric or segmenter that are not found."""
    return [r for r in component.requirements() if not r.found]


@dataclass(frozen=True)
class Semantics:
    """A semantic label map given to a semantic codec's sender.

    ``labels``: H×W uint8 class ids of ``class_set`` (255 = ignore/void).
    ``source``: where it came from, recorded with every row ("ground-truth" or
    "segmenter:<name>@<sha256[:12]>").
    """

    labels: np.ndarray
    class_set: str
    source: str


@dataclass
class Encoded:
    """The transmitted parts (real bytes) plus untransmitted notes for the record.

    A codec whose paper reports a formula rate instead of real bytes declares it with the
    numeric note ``bpp_paper`` (and optionally its terms ``bpp_paper_<name>``); it is
    reported beside the real bpp, never instead (``--rate paper`` draws with it).
    """

    parts: dict[str, bytes]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(part_sizes(self.parts).values())


BYTE_TYPES = (bytes, bytearray, memoryview)


def part_sizes(parts: Any) -> dict[str, int]:
    """Byte count of every part (``memoryview.nbytes``, not its element count). A part that is
    not ``bytes`` / ``bytearray`` / ``memoryview`` — a numpy array, a ``str``, a list — is a
    :class:`CodecError`: its length is not its size in bytes."""
    if not isinstance(parts, Mapping):
        raise CodecError(f"encode returned parts of type {type(parts).__name__}, not a mapping name -> bytes",
                         "return Encoded({'image': data}) with bytes values")
    sizes = {}
    for name, data in parts.items():
        if not isinstance(data, BYTE_TYPES):
            raise CodecError(f"encoded part {name!r} is a {type(data).__name__}, not bytes/bytearray/memoryview "
                             "(its length is not its size in bytes)",
                             "return the transmitted bytes, e.g. array.tobytes() or text.encode()")
        sizes[str(name)] = memoryview(data).nbytes
    return sizes


def bits_per_pixel(n_bytes: int, height: int, width: int) -> float:
    """bpp = 8 × bytes / (H × W)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    return 8.0 * n_bytes / (height * width)


class Codec(ABC):
    """Base class of codec adapters.

    Subclasses set ``name``, ``version`` and ``rate_knob``, and implement
    :meth:`encode` and :meth:`decode`. ``needs_semantics`` codecs receive the label map.
    """

    name: str = "codec"  # set to the card's name when built from a card
    version: str = "0"
    rate_knob: RateKnob
    needs_semantics: bool = False
    #: True when encode/decode may run in worker processes (pure CPU work, picklable
    #: adapter: classical codecs, subprocess tools); learned codecs stay in the main
    #: process where the accelerator and the loaded weights are.
    parallel_safe: bool = False
    #: True when ``params.checkpoint`` maps each rate point to a file (one trained model per
    #: rate, as CompressAI's λ): a sweep then gives the one checkpoint to each swept rate.
    checkpoint_per_rate: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        if params:
            raise ConfigError(
                f"codec {self.name!r} takes no parameter {sorted(params)}",
                "remove them from the card's params",
            )

    # -- what it needs -------------------------------------------------------------
    def requirements(self) -> list[Requirement]:
        """Binaries, weights and packages this codec needs, found or not."""
        return []

    def missing(self) -> list[Requirement]:
        return unmet(self)

    def describe(self) -> dict[str, Any]:
        """Identity recorded with each run: version and settings that change output."""
        return {"name": self.name, "version": self.version, "params": self.params()}

    def params(self) -> dict[str, Any]:
        return {}

    def rate_label(self, rate: Any) -> str:
        """Stable text form of a rate point used as a row key."""
        return f"{rate:g}" if isinstance(rate, float) else str(rate)

    # -- the work -----------------------------------------------------------------
    @abstractmethod
    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        """Compress ``image`` (H×W×3 uint8 RGB) at ``rate`` into real byte parts."""

    @abstractmethod
    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        """Reconstruct an H×W×3 uint8 RGB image from the byte parts alone."""


def check_rgb_uint8(image: np.ndarray) -> None:
    """Raise :class:`CodecError` unless ``image`` is H×W×3 uint8."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise CodecError(
            f"expected an H×W×3 uint8 RGB image, got {image.dtype} {image.shape}",
            "convert with numpy: np.asarray(pil_image.convert('RGB'))",
        )


def find_binary(name: str, configured: str | None = None) -> str | None:
    """Path of an executable: the configured path if given, else a PATH lookup."""
    if configured:
        return configured if shutil.which(configured) else None
    return shutil.which(name)
