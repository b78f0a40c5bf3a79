"""A bundled demo set that needs no download: public-domain / CC0 photos shipped with
scikit-image, center-cropped to 2:1 and resized to 256×512 (the Cityscapes protocol), so
every codec — the learned ones included — runs on it.

The label maps are SYNTHETIC smoke-test labels, not ground truth: a fixed colour and
position rule (:func:`synthetic_labels`) assigns Cityscapes trainIds (sky at the top if
blue or bright, vegetation if green, road at the bottom if grey, …). They let semantic
codecs and mIoU code run end to end; numbers measured against them mean nothing about
segmentation quality. ``protocol()`` says ``"labels": "synthetic-v1"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.modes import Fit

from ..errors import ConfigError, UnavailableError
from .base import Dataset, Sample
from .classes import CITYSCAPES_19, CITYSCAPES_34, CITYSCAPES_TRAINID_TO_LABELID, IGNORE, apply_lut
from .protocol import Resolution, read_image_file, source_note

#: id → file in skimage's bundled data folder; licences as stated in skimage.data.
DEMO_IMAGES: dict[str, str] = {
    "astronaut": "astronaut.png",          # NASA, public domain
    "chelsea": "chelsea.png",              # CC0 (Stefan van der Walt)
    "coffee": "coffee.png",                # CC0 (Rachel Michetti)
    "rocket": "rocket.jpg",                # SpaceX, public domain
    "hubble_deep_field": "hubble_deep_field.jpg",  # NASA, public domain
}
SYNTHETIC_VERSION = "synthetic-v1"
CLASS_CHOICES = {"trainid19": CITYSCAPES_19, "labelid34": CITYSCAPES_34}

# trainIds used by the rule
ROAD, SIDEWALK, BUILDING, VEGETATION, TERRAIN, SKY, PERSON, CAR = 0, 1, 2, 8, 9, 10, 11, 13


def skimage_data_dir() -> Path:
    """The folder of images bundled in the scikit-image wheel (no network needed)."""
    try:
        import skimage.data
    except ImportError as err:  # pragma: no cover - scikit-image is a core dependency
        raise UnavailableError(f"demo: scikit-image is not importable ({err})",
                               "pip install scikit-image") from None
    return Path(skimage.data.__file__).resolve().parent


def synthetic_labels(image: np.ndarray) -> np.ndarray:
    """Deterministic H×W uint8 trainIds (0..18, 255) from an H×W×3 uint8 image.

    A smoke-test labelling, not a segmentation: the image is blurred (Gaussian σ = 3 px),
    each pixel gets a class from its HSV colour and its row y ∈ [0, 1) (top = 0), then a
    majority filter (disk, radius 7 px) makes compact regions. Rules, first match wins:
    very dark (V < 0.08) → 255 void; green hue, S ≥ 0.25 → vegetation (y < 0.7) or
    terrain; blue hue, S ≥ 0.15, y < 0.6 → sky; bright grey (S < 0.15, V > 0.7), y < 0.35
    → sky; skin-like hue/saturation → person; grey (S < 0.2, V < 0.75) with y ≥ 0.75 →
    road; weakly saturated (S < 0.3) with y ≥ 0.6 → sidewalk; strongly saturated (S > 0.55)
    → car; anything else → building.
    """
    from skimage.color import rgb2hsv
    from skimage.filters import gaussian
    from skimage.filters.rank import majority
    from skimage.morphology import disk

    smooth = gaussian(image.astype(np.float32) / 255.0, sigma=3, channel_axis=-1, preserve_range=True)
    hsv = rgb2hsv(np.clip(smooth, 0.0, 1.0))
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    y = (np.arange(image.shape[0], dtype=np.float32) / image.shape[0])[:, None] * np.ones_like(h)

    labels = np.full(image.shape[:2], BUILDING, dtype=np.uint8)
    rules = [  # applied in reverse so that the first rule wins
        (v < 0.08, IGNORE),
        ((h >= 0.17) & (h <= 0.45) & (s >= 0.25) & (y < 0.7), VEGETATION),
        ((h >= 0.17) & (h <= 0.45) & (s >= 0.25), TERRAIN),
        ((h >= 0.50) & (h <= 0.72) & (s >= 0.15) & (y < 0.6), SKY),
        ((s < 0.15) & (v > 0.7) & (y < 0.35), SKY),
        (((h < 0.08) | (h > 0.96)) & (s > 0.2) & (s < 0.6) & (v > 0.35), PERSON),
        ((y >= 0.75) & (s < 0.2) & (v < 0.75), ROAD),
        ((y >= 0.6) & (s < 0.3), SIDEWALK),
        (s > 0.55, CAR),
    ]
    for mask, cls in reversed(rules):
        labels[mask] = cls
    return majority(labels, disk(7))


def cached_labels(image: np.ndarray) -> np.ndarray:
    """:func:`synthetic_labels`, computed once per image content (bench.runtime.refcache: 0.5 s
    each otherwise, for every run and report that loads the image)."""
    from bench.runtime.refcache import default_cache

    value = default_cache().get_or_compute(image, "demo-synthetic-labels-v1", lambda: synthetic_labels(image))
    assert isinstance(value, np.ndarray)
    return value


class DemoDataset(Dataset):
    """Five bundled photos (ids: astronaut, chelsea, coffee, rocket, hubble_deep_field).

    Params: ``height``/``width`` (pixels, default 256×512; None/0 = native), ``fit``
    (default "center_crop" to the target aspect), ``classes`` ("trainid19" | "labelid34").
    Labels are synthetic (see the module docstring).
    """

    name = "demo"

    def __init__(self, *, height: Any = 256, width: Any = 512, fit: Fit = "center_crop",
                 classes: str = "trainid19", image_resample: str = "bilinear",
                 label_resample: str = "nearest") -> None:
        if classes not in CLASS_CHOICES:
            raise ConfigError(f"demo: classes={classes!r} is not one of {sorted(CLASS_CHOICES)}",
                              "use classes=trainid19 or labelid34")
        self.classes = classes
        self.class_set = CLASS_CHOICES[classes]
        self.resolution = Resolution.from_params(self.name, height, width, fit, image_resample, label_resample)
        self._dir = skimage_data_dir()

    def ids(self) -> list[str]:
        return list(DEMO_IMAGES)

    def files(self, image_id: str) -> list[Path]:
        if image_id not in DEMO_IMAGES:
            raise ConfigError(f"demo: no image {image_id!r}", f"use one of {', '.join(DEMO_IMAGES)}")
        path = self._dir / DEMO_IMAGES[image_id]
        if not path.is_file():
            raise UnavailableError(f"demo: {path} is missing from the scikit-image install",
                                   "reinstall scikit-image (pip install --force-reinstall scikit-image)")
        return [path]

    def load(self, image_id: str) -> Sample:
        path = self.files(image_id)[0]
        info: dict[str, Any] = {}
        raw = read_image_file(path, self.name, info)
        image = self.resolution.image(raw)
        labels = cached_labels(image)
        if self.classes == "labelid34":
            labels = apply_lut(labels, CITYSCAPES_TRAINID_TO_LABELID)
        return Sample(image_id, image, labels,
                      {"path": str(path), "native_size": [int(raw.shape[0]), int(raw.shape[1])],
                       "labels": SYNTHETIC_VERSION, **source_note(info)})

    def protocol(self) -> dict[str, Any]:
        return {"dataset": self.name, "class_set": self.class_set.name if self.class_set else None, "labels": SYNTHETIC_VERSION,
                "classes": self.classes, **self.resolution.protocol()}
