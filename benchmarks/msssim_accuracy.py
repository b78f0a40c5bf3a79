"""How far bench's MS-SSIM is from pytorch-msssim's (float64) on Kodak: the README's figure.

Each Kodak image is JPEG-coded at ``--qualities`` (Pillow); bench's MS-SSIM of the
reconstruction (``bench.metrics.pixel.MSSSIM``, float32 kernel) is compared with
``pytorch_msssim.ms_ssim(data_range=255)`` on float64 tensors. Prints the largest absolute
difference and where it occurred.

    python benchmarks/msssim_accuracy.py [--root ../shared/data/kodak] [--qualities 10,50,90]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kodak"))
    ap.add_argument("--qualities", default="10,50,90")
    args = ap.parse_args()
    import torch
    from PIL import Image
    from pytorch_msssim import ms_ssim

    from bench.datasets.base import Sample
    from bench.metrics.base import Pair
    from bench.metrics.pixel import MSSSIM

    files = sorted(Path(args.root).glob("*.png"))
    if not files:
        raise SystemExit(f"no PNG in {args.root}: give --root the Kodak folder")
    worst = (0.0, "")
    diffs = []
    for path in files:
        img = np.asarray(Image.open(path).convert("RGB"))
        for q in (int(v) for v in args.qualities.split(",")):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=q)
            rec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            ours = MSSSIM().update(MSSSIM().init(), Pair(Sample(path.stem, img), rec, 0))["msssim"]
            a, b = (torch.from_numpy(x.copy()).permute(2, 0, 1)[None].double() for x in (img, rec))
            diff = abs(ours - float(ms_ssim(a, b, data_range=255)))
            diffs.append(diff)
            worst = max(worst, (diff, f"{path.stem} q{q}"))
    print(f"{len(diffs)} pairs: max |bench - pytorch-msssim (float64)| = {worst[0]:.2e} ({worst[1]}), "
          f"median {np.median(diffs):.1e}")


if __name__ == "__main__":
    main()
