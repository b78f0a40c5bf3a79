"""PSNR against scikit-image, MS-SSIM against pytorch-msssim, bpp by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from bench.codecs.base import bits_per_pixel
from bench.datasets.base import Sample
from bench.errors import MetricError
from bench.metrics.base import Pair
from bench.metrics.pixel import MSSSIM, PSNR, msssim_db


def _noisy(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(img + rng.normal(0, sigma, img.shape)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [data.astronaut()[:192, :224], data.coffee()[:192, :224], data.chelsea()[:192, :224]]


def test_psnr_equals_scikit_image(photos):
    metric = PSNR()
    state = metric.init()
    per_image, mses = [], []
    for i, img in enumerate(photos):
        rec = _noisy(img, 4 + 3 * i, i)
        values = metric.update(state, Pair(Sample(str(i), img), rec, 0))
        ref = peak_signal_noise_ratio(img, rec, data_range=255)
        assert values["psnr"] == pytest.approx(ref, abs=1e-10)
        per_image.append(ref)
        mses.append(np.mean((img.astype(float) - rec.astype(float)) ** 2))
    summary = metric.compute(state)
    assert summary["psnr"] == pytest.approx(np.mean(per_image), abs=1e-10)
    assert summary["psnr_of_mean_mse"] == pytest.approx(10 * math.log10(255**2 / np.mean(mses)), abs=1e-10)
    assert summary["psnr_of_mean_mse"] != pytest.approx(summary["psnr"], abs=1e-3)


def test_psnr_merge_equals_single_pass(photos):
    metric = PSNR()
    whole, parts = metric.init(), []
    for i, img in enumerate(photos):
        pair = Pair(Sample(str(i), img), _noisy(img, 6, i), 0)
        metric.update(whole, pair)
        s = metric.init()
        metric.update(s, pair)
        parts.append(s)
    merged = metric.merge(metric.merge(parts[2], parts[0]), parts[1])
    assert metric.compute(merged) == pytest.approx(metric.compute(whole))


def test_psnr_identical_images_is_infinite(photos):
    metric = PSNR()
    state = metric.init()
    assert math.isinf(metric.update(state, Pair(Sample("x", photos[0]), photos[0].copy(), 0))["psnr"])
    assert math.isinf(metric.compute(state)["psnr_of_mean_mse"])


def test_msssim_equals_pytorch_msssim(photos):
    metric = MSSSIM()
    state = metric.init()
    refs = []
    for i, img in enumerate(photos):
        rec = _noisy(img, 10, i)
        values = metric.update(state, Pair(Sample(str(i), img), rec, 0))
        a = torch.from_numpy(img).permute(2, 0, 1)[None].double()
        b = torch.from_numpy(rec).permute(2, 0, 1)[None].double()
        ref = float(ms_ssim(a, b, data_range=255))
        assert values["msssim"] == pytest.approx(ref, abs=1e-6)  # ours runs in float32
        assert values["msssim_db"] == pytest.approx(-10 * math.log10(1 - ref), abs=1e-4)
        refs.append(ref)
    assert metric.compute(state)["msssim"] == pytest.approx(np.mean(refs), abs=1e-6)
    # ours uses the 0..255 data range: pytorch-msssim with range 1 would give another value
    a = torch.from_numpy(photos[0]).permute(2, 0, 1)[None].double()
    rec0 = _noisy(photos[0], 10, 0)
    b = torch.from_numpy(rec0).permute(2, 0, 1)[None].double()
    ours = MSSSIM().update(MSSSIM().init(), Pair(Sample("0", photos[0]), rec0, 0))["msssim"]
    assert float(ms_ssim(a, b, data_range=1.0)) != pytest.approx(ours, abs=1e-3)


def test_msssim_small_image_is_an_error_not_a_number():
    img = data.astronaut()[:160, :300]
    with pytest.raises(MetricError, match="161"):
        MSSSIM().update(MSSSIM().init(), Pair(Sample("s", img), img, 0))


def test_msssim_db_of_perfect_is_infinite():
    assert math.isinf(msssim_db(1.0))


def test_bits_per_pixel_is_exact():
    assert bits_per_pixel(1000, 256, 512) == 8 * 1000 / (256 * 512)
    assert bits_per_pixel(0, 10, 10) == 0.0
    with pytest.raises(ValueError):
        bits_per_pixel(1, 0, 10)
