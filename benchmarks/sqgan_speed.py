"""Encode/decode time per image of the SQ-GAN adapter (random-init weights, real bitstream).

    python benchmarks/sqgan_speed.py --model official --rate 0.4:0.6 --repeats 3
    python benchmarks/sqgan_speed.py --model tiny --device cpu --threads 1

Writes a random-init checkpoint of the chosen preset to a temp folder (speed does not
depend on the weights' values), codes a synthetic image + label map of the preset's size
and prints the median seconds of encode (networks + entropy coding) and decode.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.codecs.base import Semantics, bits_per_pixel
from bench.codecs.sqgan.adapter import SQGANCodec
from bench.codecs.sqgan.checkpoint import save_official_layout
from bench.codecs.sqgan.config import make_config
from bench.codecs.sqgan.model import SQGAN


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="official", help="preset: official | tiny | micro")
    ap.add_argument("--rate", default="0.4:0.6", help="kept fractions m_x:m_s")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = make_config(args.model)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (cfg.height, cfg.width, 3), dtype=np.uint8)
    labels = np.repeat(np.repeat(rng.integers(0, 19, (cfg.height // 32, cfg.width // 32)), 32, 0), 32, 1)
    sem = Semantics(labels.astype(np.uint8), "cityscapes19", "ground-truth")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_official_layout(SQGAN(cfg), Path(tmp) / "random.ckpt")
        codec = SQGANCodec(checkpoint=str(ckpt), model=args.model, device=args.device)
        codec.model()
        enc_t, dec_t = [], []
        for _ in range(args.repeats + 1):  # first round is warm-up
            sync = torch.cuda.synchronize if codec.device.startswith("cuda") else (lambda: None)
            t0 = time.perf_counter()
            enc = codec.encode(image, args.rate, semantics=sem)
            sync()
            t1 = time.perf_counter()
            codec.decode(enc.parts)
            sync()
            t2 = time.perf_counter()
            enc_t.append(t1 - t0)
            dec_t.append(t2 - t1)
    enc_t, dec_t = enc_t[1:], dec_t[1:]
    print(f"sqgan {args.model} {cfg.height}x{cfg.width} rate {args.rate} on {codec.device} "
          f"(torch threads {torch.get_num_threads()}): encode {statistics.median(enc_t):.3f} s, "
          f"decode {statistics.median(dec_t):.3f} s per image (median of {len(enc_t)}); "
          f"{enc.total_bytes} bytes = {bits_per_pixel(enc.total_bytes, cfg.height, cfg.width):.5f} bpp, "
          f"bound {enc.notes['bpp_paper']:.6f} bpp")


if __name__ == "__main__":
    main()
