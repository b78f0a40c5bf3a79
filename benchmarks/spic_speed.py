"""SPIC receiver speed: decode time per image and per diffusion step, plus label-coder speed.

Uses the given checkpoint, or a random-initialised U-Net of the official size (653 M
parameters; timing only: the output means nothing). Images are the demo set (256×512,
synthetic Cityscapes labels). The coarse image is coded with the ``--coarse-codec``
(BPG if installed, else a stand-in: it does not affect the timing of the network).

    python benchmarks/spic_speed.py [--device cuda] [--precision fp16] [--images 2]
                                    [--width 256] [--checkpoint ema_0.9999_xxx.pt]

Prints: model load time; per image the label decode, coarse decode and diffusion time;
per step the mean / min wall time of one guided step (two U-Net passes in one batch);
and peak GPU memory on CUDA.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="SPIC state_dict (default: random weights of --width)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--width", type=int, default=256, help="U-Net num_channels (official 256)")
    parser.add_argument("--q", type=int, default=35, help="BPG quantiser")
    parser.add_argument("--coarse-codec", default="auto")
    parser.add_argument("--label-coder", default="runs")
    args = parser.parse_args()

    import torch

    from bench.codecs.base import Semantics, bits_per_pixel
    from bench.codecs.spic.adapter import SpicCodec
    from bench.codecs.spic.checkpoint import save_random_checkpoint
    from bench.datasets.demo import DemoDataset

    tmp = tempfile.TemporaryDirectory(prefix="spic-speed-")
    ckpt = args.checkpoint
    codec_kw = {"device": args.device, "precision": args.precision, "coarse_codec": args.coarse_codec,
                    "label_coder": args.label_coder, "width": args.width}
    if ckpt is None:
        probe = SpicCodec(**codec_kw)
        t0 = time.perf_counter()
        ckpt = str(save_random_checkpoint(Path(tmp.name) / "random.pt", probe.config))
        print(f"random checkpoint (width {args.width}) written in {time.perf_counter() - t0:.1f} s")
    codec = SpicCodec(checkpoint=ckpt, **codec_kw)
    dev = codec.device()
    print(f"device {dev}, precision {args.precision}, coarse codec {codec.display_name}, "
          f"label coder {args.label_coder}, steps {codec.schedule.timesteps[::-1]}")
    t0 = time.perf_counter()
    model = codec.model()
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    print(f"model load: {time.perf_counter() - t0:.2f} s, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")

    ds = DemoDataset()
    step_times: list[float] = []
    image_times: list[float] = []
    for n, image_id in enumerate(ds.ids()[: args.images]):
        sample = ds.load(image_id)
        enc = codec.encode(sample.image, args.q, semantics=Semantics(sample.labels, "cityscapes19", "synthetic"))
        t0 = time.perf_counter()
        labels, coarse = codec.decode_parts(enc.parts)
        t1 = time.perf_counter()
        marks: list[float] = []

        def on_step(i: int, t: int, marks: list[float] = marks) -> None:
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

        codec.reconstruct(labels, coarse, on_step=on_step)
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        marks.append(t2)
        steps = [b - a for a, b in itertools.pairwise(marks)]
        if n > 0 or args.images == 1:  # the first image includes warm-up
            step_times += steps
            image_times.append(t2 - t0)
        bpp = bits_per_pixel(enc.total_bytes, *sample.image.shape[:2])
        print(f"{image_id}: bytes labels {len(enc.parts['labels'])} coarse {len(enc.parts['coarse'])} "
              f"({bpp:.4f} bpp); parts decode {t1 - t0:.3f} s, diffusion {t2 - t1:.2f} s "
              f"({len(steps)} steps, first {steps[0]:.3f} s)")
    print(f"decode per image: {statistics.mean(image_times):.2f} s (mean of {len(image_times)}, warm)")
    print(f"per step: mean {statistics.mean(step_times) * 1e3:.1f} ms, min {min(step_times) * 1e3:.1f} ms")
    if dev.startswith("cuda"):
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GiB")
    tmp.cleanup()


if __name__ == "__main__":
    main()
