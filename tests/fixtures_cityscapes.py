"""A tiny synthetic Cityscapes tree in the official layout, for tests.

``make_cityscapes_fixture(tmp_path)`` writes::

    ROOT/leftImg8bit/val/<city>/<city>_000000_0000NN_leftImg8bit.png   RGB
    ROOT/gtFine/val/<city>/<city>_000000_0000NN_gtFine_labelIds.png    L, label ids
    ROOT/gtFine/val/<city>/<city>_000000_0000NN_gtFine_labelTrainIds.png

Every label map contains every Cityscapes label id 0..33 and 255 (license plate, id −1,
as uint8) in a grid of blocks whose order is shuffled per image; the image is a per-id
colour plus a smooth gradient and mild noise, so it is textured but segmentable. The
trainId maps are written from the labelIds with cityscapesscripts' own table when it is
importable (else they are omitted). Deterministic: the same call writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: The values written into the labelIds maps: 0..33 and 255 (= −1 license plate as uint8).
FIXTURE_LABEL_IDS: tuple[int, ...] = tuple(range(34)) + (255,)
CITIES: tuple[str, ...] = ("aachen", "bochum", "cologne", "dresden", "erfurt", "frankfurt")


def _label_map(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A grid of 5 × 7 blocks, one per id of FIXTURE_LABEL_IDS, in a random order."""
    rows, cols = 5, 7
    ids = np.array(FIXTURE_LABEL_IDS, dtype=np.uint8)[rng.permutation(len(FIXTURE_LABEL_IDS))]
    grid = ids.reshape(rows, cols)
    r = np.minimum(np.arange(height) * rows // height, rows - 1)
    c = np.minimum(np.arange(width) * cols // width, cols - 1)
    return grid[r[:, None], c[None, :]]


def _image(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    palette = np.random.default_rng(1234).integers(30, 226, size=(256, 3)).astype(np.float32)
    h, w = labels.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gradient = 25.0 * np.sin(xx / w * np.pi * 2 + rng.uniform(0, 6)) * np.cos(yy / h * np.pi)
    noise = rng.normal(0.0, 6.0, size=(h, w, 3)).astype(np.float32)
    img = palette[labels] + gradient[..., None] + noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _trainid_lut() -> np.ndarray | None:
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError:
        return None
    lut = np.full(256, 255, dtype=np.uint8)
    for label in labels:
        lut[label.id & 0xFF] = label.trainId if 0 <= label.trainId < 255 else 255
    return lut


def make_cityscapes_fixture(root: Path, n_cities: int = 2, per_city: int = 2,
                            size: tuple[int, int] = (256, 512), split: str = "val",
                            seed: int = 0) -> Path:
    """Write ``n_cities × per_city`` image/label pairs of ``size`` = (H, W) under ``root``.

    Returns ``root`` (the dataset root to pass as ``root=``). ``size`` should be at
    least 5×7 so that every label id gets a block.
    """
    root = Path(root)
    height, width = size
    rng = np.random.default_rng(seed)
    lut = _trainid_lut()
    for city in CITIES[:n_cities]:
        image_dir = root / "leftImg8bit" / split / city
        label_dir = root / "gtFine" / split / city
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for k in range(per_city):
            stem = f"{city}_000000_{k * 19 + 19:06d}"
            labels = _label_map(rng, height, width)
            Image.fromarray(_image(rng, labels), "RGB").save(image_dir / f"{stem}_leftImg8bit.png")
            Image.fromarray(labels, "L").save(label_dir / f"{stem}_gtFine_labelIds.png")
            if lut is not None:
                Image.fromarray(lut[labels], "L").save(label_dir / f"{stem}_gtFine_labelTrainIds.png")
    return root
