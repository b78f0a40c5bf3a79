"""Named resampling rules of the dataset protocols (images and label maps).

Each paper's loader resizes differently, and the difference shows in the numbers (on
Cityscapes at 4× reduction the two nearest-neighbour rules below disagree on 1.9–2.8 % of
the label pixels of real val frames, as measured for issue 24). A protocol names its rules; these functions implement them:

Images (H×W×3 uint8 → h×w×3 uint8):

* ``bilinear`` — one PIL ``resize(BILINEAR)`` (antialiased): SQ-GAN's val loader
  (``transforms.Resize`` on a PIL image, official ``data/cityscapes_base.py``) and the
  harness's default.
* ``box-halving`` — SPIC / guided-diffusion ``resize_arr`` (official
  ``guided_diffusion/image_datasets.py``): while the short side is at least twice the
  target's short side, PIL ``resize(BOX)`` to (w // 2, h // 2); then PIL ``BICUBIC`` to the
  target size (a no-op for Cityscapes 1024×2048 → 256×512, two halvings).

Label maps (H×W uint8 ids → h×w uint8 ids, never new ids):

* ``nearest`` — PIL ``NEAREST``: the source pixel nearest to each target pixel's
  *centre*, i.e. row ``floor((i + 0.5) · H / h)`` (SPIC, and the default).
* ``nearest-torch`` — ``torch.nn.functional.interpolate(mode="nearest")`` as SQ-GAN
  applies it to the label tensor (``ToTensor`` then ``Resize(NEAREST)``): row
  ``floor(i · s)`` with ``s = float32(H) / float32(h)`` — the *top-left* source pixel of
  each block; computed here in float32 exactly as torch does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from ..errors import ConfigError

Resampler = Callable[[np.ndarray, int, int], np.ndarray]


def bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """PIL bilinear resize of a uint8 RGB image to ``height``×``width``."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def box_halving(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """SPIC's ``resize_arr``: PIL BOX halvings while the short side stays ≥ 2× the target's
    short side, then PIL bicubic to ``height``×``width`` (skipped when already there)."""
    pil = Image.fromarray(image)
    target_short = min(height, width)
    while min(pil.size) >= 2 * target_short:
        pil = pil.resize((pil.size[0] // 2, pil.size[1] // 2), resample=Image.Resampling.BOX)
    if pil.size != (width, height):
        pil = pil.resize((width, height), resample=Image.Resampling.BICUBIC)
    return np.asarray(pil)


def nearest_centre(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """PIL NEAREST resize of a uint8 label map (the pixel under each target centre)."""
    if labels.shape[:2] == (height, width):
        return labels
    return np.asarray(Image.fromarray(labels).resize((width, height), Image.Resampling.NEAREST))


def _torch_nearest_index(size_in: int, size_out: int) -> np.ndarray:
    scale = np.float32(size_in) / np.float32(size_out)  # torch: float(input) / output
    index = np.floor(np.arange(size_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(index, size_in - 1)


def nearest_topleft(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """``F.interpolate(mode="nearest")`` of a label map, without torch (float32 indices)."""
    if labels.shape[:2] == (height, width):
        return labels
    rows = _torch_nearest_index(labels.shape[0], height)
    cols = _torch_nearest_index(labels.shape[1], width)
    return labels[rows[:, None], cols[None, :]]


#: name → (function, text recorded in the protocol)
IMAGE_RESAMPLERS: dict[str, tuple[Resampler, str]] = {
    "bilinear": (bilinear, "bilinear(PIL)"),
    "box-halving": (box_halving, "box-halving(PIL BOX x1/2 while short side >= 2x target)+bicubic(PIL)"),
}
LABEL_RESAMPLERS: dict[str, tuple[Resampler, str]] = {
    "nearest": (nearest_centre, "nearest"),
    "nearest-torch": (nearest_topleft, "nearest(torch F.interpolate, top-left)"),
}


def resampler(kind: str, name: str, dataset: str) -> tuple[Resampler, str]:
    """The (function, recorded text) of an image or label resampling rule by name."""
    table = IMAGE_RESAMPLERS if kind == "image" else LABEL_RESAMPLERS
    if name not in table:
        raise ConfigError(f"{dataset}: {kind}_resample={name!r} is not one of {sorted(table)}",
                          f"use {kind}_resample: " + " | ".join(table))
    return table[name]
