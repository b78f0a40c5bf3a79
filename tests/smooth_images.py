"""Small smooth, noisy RGB test images (no network, no dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_images(folder: Path, n: int = 2, size: tuple[int, int] = (168, 176)) -> list[np.ndarray]:
    """``n`` smooth noisy RGB PNGs (≥ 161 px a side: CompressAI's MS-SSIM needs 5 scales)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        img = np.stack([xx * 255 // w, yy * 255 // h, (xx * (i + 1) + yy) % 256], -1)
        img = np.clip(img + rng.integers(-30, 31, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i}.png")
        out.append(img)
    return out
