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


# -- the MS-SSIM kernel (bench.metrics.ssim_kernel) against pytorch-msssim in float64 ---------------

def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _reference(refs: list[np.ndarray], recs: list[np.ndarray]) -> np.ndarray:
    """pytorch-msssim in float64, one value per image."""
    a = torch.from_numpy(np.stack(refs)).permute(0, 3, 1, 2).double()
    b = torch.from_numpy(np.stack(recs)).permute(0, 3, 1, 2).double()
    return ms_ssim(a, b, data_range=255, size_average=False).numpy()


def _photo(h: int, w: int) -> np.ndarray:
    """A real photo of h×w: scikit-image's astronaut/coffee, cropped, or resized up for large sizes."""
    from PIL import Image

    src = data.coffee() if w > h else data.astronaut()
    if src.shape[0] < h or src.shape[1] < w:
        scale = max(h / src.shape[0], w / src.shape[1])
        size = (math.ceil(src.shape[1] * scale), math.ceil(src.shape[0] * scale))
        src = np.asarray(Image.fromarray(src).resize(size, Image.BICUBIC))
    return np.ascontiguousarray(src[:h, :w])


@pytest.mark.parametrize("h,w,distortion", [(161, 161, "jpeg10"), (161, 300, "noise"), (175, 233, "jpeg60"),
                                             (256, 512, "noise"), (383, 511, "jpeg10"), (1024, 683, "jpeg30")])
def test_msssim_kernel_equals_pytorch_msssim_on_photos_of_many_sizes(h, w, distortion):
    from bench.metrics.pixel import msssim_rgb

    img = _photo(h, w)
    rec = _noisy(img, 12, h) if distortion == "noise" else _jpeg(img, int(distortion[4:]))
    expected = float(_reference([img], [rec])[0])
    assert 0.5 < expected < 0.999  # a real distortion, not a trivial value
    assert msssim_rgb(img, rec) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("batch", [1, 3])
def test_msssim_kernel_batches_equal_single_images_and_pytorch_msssim(batch):
    from bench.metrics.ssim_kernel import ms_ssim as fast_ms_ssim

    refs = [_photo(203, 317)] * batch
    recs = [_jpeg(refs[0], 5 + 15 * i) for i in range(batch)]
    x = torch.from_numpy(np.stack(refs)).permute(0, 3, 1, 2)
    y = torch.from_numpy(np.stack(recs)).permute(0, 3, 1, 2)
    batched = fast_ms_ssim(x, y).numpy()
    assert batched.shape == (batch,) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, _reference(refs, recs), rtol=0, atol=1e-6)
    singles = [float(fast_ms_ssim(x[i:i + 1], y[i:i + 1])[0]) for i in range(batch)]
    np.testing.assert_allclose(batched, singles, rtol=0, atol=1e-7)


def test_msssim_kernel_on_kodak(shared_dir):
    """Full 768×512 and 512×768 Kodak photos against their JPEG reconstructions."""
    from PIL import Image

    from bench.metrics.pixel import msssim_rgb

    for name in ("kodim01.png", "kodim04.png"):  # kodim04 is portrait
        img = np.asarray(Image.open(shared_dir / "data" / "kodak" / name).convert("RGB"))
        rec = _jpeg(img, 20)
        assert msssim_rgb(img, rec) == pytest.approx(float(_reference([img], [rec])[0]), abs=1e-6)


def test_msssim_kernel_edge_cases_follow_pytorch_msssim():
    """Identical images give 1; an inverted image has negative contrast-structure, which
    pytorch-msssim clips by relu (value 0); float inputs with data range 1 and float64 work."""
    from bench.metrics.ssim_kernel import ms_ssim as fast_ms_ssim

    img = _photo(170, 190)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    assert float(fast_ms_ssim(x, x)[0]) == pytest.approx(1.0, abs=1e-6)
    inverted = 255 - x
    ref = float(ms_ssim(x.double(), inverted.double(), data_range=255))
    assert ref == 0.0 and float(fast_ms_ssim(x, inverted)[0]) == 0.0
    rec = torch.from_numpy(_jpeg(img, 15)).permute(2, 0, 1)[None]
    expected = float(ms_ssim(x.double() / 255, rec.double() / 255, data_range=1.0))
    assert float(fast_ms_ssim(x.float() / 255, rec.float() / 255, data_range=1.0)[0]) == pytest.approx(expected,
                                                                                                      abs=1e-6)
    as64 = fast_ms_ssim(x.double(), rec.double())
    assert as64.dtype == torch.float64 and float(as64[0]) == pytest.approx(expected, abs=1e-12)


def test_msssim_kernel_parts_equal_torch_ops():
    """The separable blur equals pytorch-msssim's grouped convolution, the pooling F.avg_pool2d
    with padding on odd sides (zeros counted)."""
    import torch.nn.functional as F
    from pytorch_msssim.ssim import _fspecial_gauss_1d, gaussian_filter

    from bench.metrics.ssim_kernel import avg_pool_2x2, gaussian_blur

    x = torch.rand(2, 3, 37, 52, dtype=torch.float64) * 255
    win = _fspecial_gauss_1d(11, 1.5).double().repeat(3, 1, 1, 1)
    np.testing.assert_allclose(gaussian_blur(x).numpy(), gaussian_filter(x, win).numpy(), atol=1e-5)
    for h, w in [(8, 10), (9, 10), (8, 11), (9, 11)]:
        y = x[..., :h, :w].contiguous()
        np.testing.assert_allclose(avg_pool_2x2(y).numpy(), F.avg_pool2d(y, 2, padding=[h % 2, w % 2]).numpy(),
                                   atol=1e-12)
        np.testing.assert_allclose(avg_pool_2x2(y - 128, fill=-128.0).numpy() + 128,
                                   F.avg_pool2d(y, 2, padding=[h % 2, w % 2]).numpy(), atol=1e-9)
