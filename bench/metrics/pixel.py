"""Pixel metrics on 8-bit RGB: PSNR (dB) and MS-SSIM ([0,1] and dB)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import MetricError
from .base import Metric, Pair, State

MSSSIM_MIN_SIDE = 161  # 5 scales, 11-px window: (11 - 1) * 2**4 = 160 < side


def _check_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    ref, rec = pair.sample.image, pair.reconstruction
    if ref.shape != rec.shape:
        raise MetricError(
            f"reconstruction {rec.shape} and original {ref.shape} differ in size",
            "the codec's decode must return the original H×W×3",
        )
    if ref.dtype != np.uint8 or rec.dtype != np.uint8:
        raise MetricError("PSNR/MS-SSIM take uint8 images", "round and clip to 0..255 first")
    return ref, rec


def mse_uint8(ref: np.ndarray, rec: np.ndarray) -> float:
    """Mean squared error over all pixels and channels, in 8-bit units²."""
    diff = ref.astype(np.float64) - rec.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB; ``inf`` for identical images."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


class PSNR(Metric):
    """RGB PSNR in dB with peak 255 on 8-bit images.

    Per image: 10·log10(255² / MSE); ``inf`` for an identical reconstruction (MSE = 0).
    Dataset level (conventions, stated so the two are not mixed up):

    * ``psnr_of_mean_mse`` — PSNR of the mean MSE over *all* images (identical ones
      included, with MSE 0): finite unless every image is identical.
    * ``psnr`` — mean of the per-image PSNRs over the images that are *not* identical
      (their number is ``psnr_n``); ``inf`` only when every image is identical.
    * ``n_identical`` — identical reconstructions (MSE = 0), left out of ``psnr``.
    """

    name = "psnr"
    unit = "dB"
    pixel = True  # no network: light CPU work (see bench.runtime.threads)

    def init(self) -> State:
        return {"n": np.zeros(()), "sum_psnr": np.zeros(()), "n_inf": np.zeros(()), "sum_mse": np.zeros(())}

    def update(self, state: State, pair: Pair) -> dict[str, float]:
        mse = mse_uint8(*_check_pair(pair))
        psnr = psnr_from_mse(mse)
        state["n"] += 1
        state["sum_mse"] += mse
        if math.isinf(psnr):
            state["n_inf"] += 1
        else:
            state["sum_psnr"] += psnr
        return {"psnr": psnr, "mse": mse}

    def compute(self, state: State) -> dict[str, float]:
        n, n_inf = float(state["n"]), float(state["n_inf"])
        if n == 0:
            return {"psnr": math.nan, "psnr_of_mean_mse": math.nan, "psnr_n": 0.0, "n_identical": 0.0}
        finite = n - n_inf
        return {
            "psnr": float(state["sum_psnr"]) / finite if finite else math.inf,
            "psnr_of_mean_mse": psnr_from_mse(float(state["sum_mse"]) / n),
            "psnr_n": finite,
            "n_identical": n_inf,
        }


class MSSSIM(Metric):
    """RGB MS-SSIM in [0, 1] (data range 255, 5 scales, Gaussian σ=1.5, 11-px window), with
    pytorch-msssim's definition and values (computed by :mod:`bench.metrics.ssim_kernel`);
    also reported in dB as −10·log10(1 − MS-SSIM).

    Dataset level: ``msssim`` = mean MS-SSIM over all images; ``msssim_db`` = the dB of
    that mean, −10·log10(1 − mean) (finite unless every image scores 1); ``msssim_db_mean``
    = mean of the per-image dB values over the images scoring below 1 (their number is
    ``msssim_db_mean_n``; an identical image's dB is ``inf``).

    Images whose shorter side is under 161 px raise :class:`MetricError` (the 5-scale
    pyramid does not fit), recorded for that image instead of a wrong number.
    """

    name = "msssim"
    pixel = True  # no network: light CPU work (see bench.runtime.threads)
    version = "2"  # 2: per-image dB sums leave out inf (identical images); msssim_db from the mean

    def init(self) -> State:
        return {"n": np.zeros(()), "sum_msssim": np.zeros(()), "sum_db": np.zeros(()), "n_inf": np.zeros(())}

    def update(self, state: State, pair: Pair) -> dict[str, float]:
        ref, rec = _check_pair(pair)
        value = msssim_rgb(ref, rec)
        db = msssim_db(value)
        state["n"] += 1
        state["sum_msssim"] += value
        if math.isinf(db):
            state["n_inf"] += 1
        else:
            state["sum_db"] += db
        return {"msssim": value, "msssim_db": db}

    def compute(self, state: State) -> dict[str, float]:
        n = float(state["n"])
        if n == 0:
            return {"msssim": math.nan, "msssim_db": math.nan, "msssim_db_mean": math.nan, "msssim_db_mean_n": 0.0}
        finite = n - float(state.get("n_inf", 0.0))
        mean = float(state["sum_msssim"]) / n
        return {"msssim": mean, "msssim_db": msssim_db(mean),
                "msssim_db_mean": float(state["sum_db"]) / finite if finite else math.inf,
                "msssim_db_mean_n": finite}


def msssim_db(value: float) -> float:
    """MS-SSIM in dB, −10·log10(1 − v); ``inf`` when v == 1."""
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def msssim_rgb(ref: np.ndarray, rec: np.ndarray) -> float:
    """MS-SSIM of two H×W×3 uint8 images, data range 255: pytorch-msssim's value (within 1e-6 of
    its float64 result) from :mod:`bench.metrics.ssim_kernel`, about 3× faster on CPU."""
    from .ssim_kernel import ms_ssim

    h, w = ref.shape[:2]
    if min(h, w) < MSSSIM_MIN_SIDE:
        raise MetricError(
            f"MS-SSIM needs both sides >= {MSSSIM_MIN_SIDE} px, image is {h}x{w}",
            "evaluate at a larger resolution or drop msssim from --metrics",
        )

    import torch  # here, not at import: reports and comparisons of stored runs need no torch

    def to_tensor(a: np.ndarray) -> torch.Tensor:  # a (1, 3, H, W) uint8 view; the kernel only reads it
        a = a if a.flags.writeable else a.copy()
        return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0)

    with torch.no_grad():
        return float(ms_ssim(to_tensor(ref), to_tensor(rec), data_range=255.0)[0])
