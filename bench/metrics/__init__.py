"""Metrics. Each metric subclasses :class:`bench.metrics.base.Metric`.

``BUILTIN`` lists every metric as a lazy ``module:object`` entry; add new ones here.
"""

from .base import Metric, Pair, State

BUILTIN: dict[str, tuple[str, str]] = {
    # name: (target, one-line description)
    "psnr": ("bench.metrics.pixel:PSNR", "RGB PSNR in dB, peak 255, on 8-bit images"),
    "msssim": ("bench.metrics.pixel:MSSSIM", "RGB MS-SSIM in [0,1] (and dB), data range 255, pytorch-msssim"),
    "lpips": ("bench.metrics.lpips_metric:LPIPS", "LPIPS v0.1 (AlexNet default), lower is better, lpips package"),
    "fid": ("bench.metrics.fidelity:FID", "FID (torch-fidelity Inception pool3), reconstructions vs originals, with N"),
    "kid": ("bench.metrics.fidelity:KID", "KID (torch-fidelity, poly kernel, subsets of min(1000,N)), with N"),
    "miou": ("bench.metrics.miou:MIoU", "mIoU in [0,1] via a segmenter (ESPNetv2 s=2.0 Cityscapes default) vs GT and vs the original's segmentation"),
}

__all__ = ["BUILTIN", "Metric", "Pair", "State"]
