"""Metrics. Each metric subclasses :class:`bench.metrics.base.Metric`.

``BUILTIN`` lists every metric as a lazy ``module:object`` entry; add new ones here.
"""

from .base import Metric, Pair, State

BUILTIN: dict[str, tuple[str, str]] = {
    # name: (target, one-line description)
    "psnr": ("bench.metrics.pixel:PSNR", "RGB PSNR in dB, peak 255, on 8-bit images"),
    "msssim": ("bench.metrics.pixel:MSSSIM", "RGB MS-SSIM in [0,1] (and dB), data range 255, pytorch-msssim"),
}

__all__ = ["BUILTIN", "Metric", "Pair", "State"]
