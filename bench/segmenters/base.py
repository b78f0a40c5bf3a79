"""The segmenter protocol: an RGB image in, a label map of a known class set out.

Segmenters serve two purposes: the mIoU metric segments reconstructions (and the
originals, once, through :mod:`bench.runtime.refcache`), and semantic codecs' senders use one as
their semantic segmentation model (SSM) when a dataset has no labels.

Every backend returns ``H×W uint8`` ids of its :attr:`Segmenter.class_set` at the
input image's resolution, with ``255`` = void (a class the segmenter predicts but the
class set does not evaluate, e.g. ESPNetv2's 20th "background" output). Construction
is cheap; networks are loaded on the first prediction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..codecs.base import Requirement
from ..datasets.base import ClassSet
from ..datasets.classes import CLASS_SETS
from ..errors import ConfigError

VOID = 255


class Segmenter(ABC):
    """Base class of segmenters. Subclasses set ``name`` and implement :meth:`_predict_many`."""

    name: str = "segmenter"
    version: ClassVar[str] = "1"
    #: the segmenter card this object was built from (set by :func:`bench.segmenters.make_segmenter`)
    card: dict[str, Any] = {}

    def __init__(self, *, weights_dir: str | None = None, allow_random_weights: bool = False,
                 device: str | None = None) -> None:
        """``weights_dir``: extra folder searched for weights (see bench.runtime.weights);
        ``allow_random_weights``: smoke tests only — the real architecture with seeded
        random weights when the file is missing; ``device``: "cpu", "cuda", … (None: CUDA
        when available)."""
        self.weights_dir = weights_dir
        self.allow_random_weights = allow_random_weights
        self.device = device

    # ------------------------------------------------------------------ identity
    @property
    @abstractmethod
    def class_set(self) -> ClassSet:
        """Class set of the predicted ids (ids ``0..num_classes-1``, 255 = void)."""

    @property
    def random_weights(self) -> bool:
        """True when the network runs with random weights (smoke tests only)."""
        return False

    @property
    def card_name(self) -> str:
        """The name of the card this segmenter was built from (else its backend name)."""
        return str(self.card.get("name") or self.name)

    @property
    def domain(self) -> str | None:
        """The training domain its card declares (``cityscapes``, ``coco-stuff``; None: undeclared)."""
        value = self.card.get("domain")
        return str(value) if value else None

    def describe(self) -> dict[str, Any]:
        """The recorded protocol: name, weights hash, input resolution and resizing."""
        out: dict[str, Any] = {"name": self.name, "version": self.version, "class_set": self.class_set.name}
        if self.card:
            out.update({"card": self.card_name, "domain": self.domain})
        if self.random_weights:
            out["random_weights"] = True
        return out

    @property
    def identity(self) -> str:
        """A short stable id of this exact segmenter (cache key, ``Semantics.source``)."""
        return f"{self.name}@{self.version}"

    def requirements(self) -> list[Requirement]:
        """Weights files and packages needed (``found`` False → not usable)."""
        return []

    # ------------------------------------------------------------------ prediction
    def predict(self, image: np.ndarray) -> np.ndarray:
        """Label map (H×W uint8, class ids, 255 void) of one H×W×3 uint8 RGB image."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Label maps of several images (any sizes); each is H×W uint8 of its image."""
        for image in images:
            check_rgb(image)
        if not images:
            return []
        out = self._predict_many(list(images))
        for image, labels in zip(images, out):
            assert labels.shape == image.shape[:2] and labels.dtype == np.uint8
        return out

    @abstractmethod
    def _predict_many(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Backend prediction; images are already checked."""


def check_rgb(image: np.ndarray) -> None:
    """Raise :class:`ConfigError` unless ``image`` is H×W×3 uint8."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ConfigError(f"segmenters take H×W×3 uint8 RGB images, got {desc}",
                          "convert the image to uint8 RGB (0..255) first")


def resolve_class_set(spec: ClassSet | str | int | None, default: ClassSet | None = None) -> ClassSet:
    """A :class:`ClassSet` from a known name (``"cityscapes19"``, ``"cocostuff171"``,
    ``"coco_merged9"``, …), a class count (anonymous classes ``class0…``), or a ClassSet."""
    if spec is None:
        if default is None:
            raise ConfigError("no class set given", f"pass class_set= one of {', '.join(CLASS_SETS)} or a class count")
        return default
    if isinstance(spec, ClassSet):
        return spec
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        n = int(spec)
        if not 1 <= n <= 255:
            raise ConfigError(f"class count {n} is outside 1..255", "label maps are uint8 with 255 = void")
        return ClassSet(f"classes{n}", tuple(f"class{i}" for i in range(n)))
    if spec in CLASS_SETS:
        return CLASS_SETS[spec]
    raise ConfigError(f"unknown class set {spec!r}", f"use one of {', '.join(CLASS_SETS)} or a class count")


def parse_size(size: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"1024x512"`` or ``(1024, 512)`` → (width, height) in pixels, PIL's order
    (:func:`bench.datasets.size.parse_size`, order WxH); None stays None."""
    from bench.datasets.size import parse_size as parse

    return None if size is None else parse(size, "WxH", what="input size").wh


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL bilinear resize of a uint8 RGB image to ``size`` = (width, height)."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """PIL nearest-neighbour resize of a uint8 label map (class ids are never blended)."""
    if labels.shape == (height, width):
        return labels
    return np.asarray(Image.fromarray(labels).resize((width, height), Image.Resampling.NEAREST))


def to_void(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer ids → uint8, every id outside ``0..num_classes-1`` becomes 255 (void)."""
    labels = np.asarray(labels)
    out = np.where((labels >= 0) & (labels < num_classes), labels, VOID)
    return out.astype(np.uint8)
