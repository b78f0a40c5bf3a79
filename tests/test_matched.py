"""Matched-rate search: the chosen knob is the best one for the target (checked by brute
force over every knob value), and the wrapper codec runs through the real runner."""

from __future__ import annotations

import fakes_bench
import numpy as np
import pytest
from PIL import Image

from bench.codecs.base import RateKnob, bits_per_pixel
from bench.codecs.matched import MatchedRateCodec, match_rate
from bench.errors import ConfigError
from bench.execution.runner import RunConfig, execute
from bench.registry import catalog
from bench.storage.store import Store


def _image(seed: int = 0, size: tuple[int, int] = (64, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size[1], size[0]), Image.BICUBIC))


def _all_bpp(codec, image, values) -> dict[int, float]:
    h, w = image.shape[:2]
    return {v: bits_per_pixel(codec.encode(image, v).total_bytes, h, w) for v in values}


@pytest.mark.parametrize("target", [2.0, 4.5, 9.0])
def test_quantiser_step_is_the_finest_within_target(target):
    codec, image = fakes_bench.QuantCodec(), _image()
    brute = _all_bpp(codec, image, range(1, 129))
    found = match_rate(codec, image, target)
    assert found.hit and found.bpp <= target and found.bpp == brute[found.knob]
    # lower step = more bits. zlib makes bpp slightly non-monotonic in the step, so the
    # bisection guarantee is: some step s fits the target while its finer neighbour does
    # not, and the result is at least as many bits as s (the best of the steps tried).
    assert any(brute[s] <= target < brute[s - 1] and found.bpp >= brute[s] for s in range(2, 129))
    assert not all(brute[s] >= brute[s + 1] for s in range(1, 128))  # so no global-optimum claim here
    assert found.bpp == max(b for b in found.tried.values() if b <= target)  # the best of the steps tried
    assert all(brute[v] == b for v, b in found.tried.items())
    assert len(found.tried) <= 2 + 7 + 1  # ends + log2(127) bisection steps


def test_jpeg_quality_match_and_closest_policy():
    codec, image = catalog.make_codec("jpeg"), _image(1)
    brute = _all_bpp(codec, image, range(1, 101))
    target = float(np.median(list(brute.values())))
    below = match_rate(codec, image, target)
    assert below.bpp <= target
    assert any(brute[q] <= target < brute[q + 1] and below.bpp >= brute[q] for q in range(1, 100))
    closest = match_rate(codec, image, target, policy="closest")
    q = closest.knob
    neighbours = [brute[v] for v in (q - 1, q + 1) if v in brute]
    assert all(abs(closest.bpp - target) <= abs(b - target) for b in neighbours)
    # the returned bytes decode to the image the codec makes at that knob
    assert np.array_equal(codec.decode(below.encoded.parts), codec.decode(codec.encode(image, below.knob).parts))


def test_out_of_range_target_and_bad_knob():
    codec, image = fakes_bench.QuantCodec(), _image()
    coarsest = _all_bpp(codec, image, [128])[128]
    found = match_rate(codec, image, coarsest / 10)
    assert not found.hit and found.knob == 128
    with pytest.raises(ConfigError, match="positive"):
        match_rate(codec, image, 0.0)
    with pytest.raises(ConfigError, match="policy"):
        match_rate(codec, image, 1.0, policy="above")

    class Tagged(fakes_bench.QuantCodec):
        rate_knob = RateKnob("checkpoint", ("a", "b"), higher_is_better=True)

    with pytest.raises(ConfigError, match="not numeric"):
        match_rate(Tagged(), image, 1.0)


def test_matched_codec_runs_in_the_runner(tmp_path, monkeypatch):
    data = fakes_bench.use_fakes(tmp_path, monkeypatch, 2, {"codecs/quant-matched.yaml":
        "name: quant-matched\nentry: bench.codecs.matched:MatchedRateCodec\nrates: [3.0, 6.0]\nparams:\n  codec: quant\n"})
    with Store(tmp_path / "bench.sqlite") as store:
        run = execute(RunConfig(dataset="pngs", codecs=["quant-matched"], metrics=["psnr"], workers=1), store, progress=False)
        rows = list(store.rows(run))
        meta = store.run(run)["meta"]
    assert len(rows) == 4 and all(r.status == "ok" and r.codec == "quant-matched" for r in rows)
    for r in rows:
        target = float(r.rate)
        assert r.bpp <= target and r.metrics["matched_target_bpp"] == target and r.metrics["matched_hit"] == 1
        step = int(r.metrics["matched_knob"])
        image = np.asarray(Image.open(data / f"{r.image_id}.png").convert("RGB"))
        assert r.bpp == _all_bpp(fakes_bench.QuantCodec(), image, [step])[step]
    assert meta["codecs"]["quant-matched"]["params"]["codec"]["name"] == "quant"
    by_name = MatchedRateCodec("quant")
    assert by_name.inner.name == "quant" and by_name.name == "quant-matched"
