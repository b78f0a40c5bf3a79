"""FID / KID against torch-fidelity's own ``calculate_metrics``, and the reference cache.

The FID Inception weights cannot be downloaded here: a seeded random-initialised
Inception of torch-fidelity's architecture is saved to a temporary file and used both
by torch-fidelity (``feature_extractor_weights_path``) and by the metric (its hash is
accepted for this module). The Inception forward is slow on CPU, so image counts are tiny.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench.codecs.base import Codec, Encoded, RateKnob
from bench.datasets.base import Dataset, Sample
from bench.errors import MetricError, UnavailableError, WeightsError
from bench.execution import runner
from bench.metrics import fidelity as F
from bench.metrics import inception as Inc
from bench.metrics.base import Pair
from bench.runtime import weights as W
from bench.runtime.refcache import RefCache
from bench.storage.store import pack_states, unpack_states

N_IMAGES = 8
_PUBLISHED = F.INCEPTION_WEIGHTS
_ENV = ("BENCH_WEIGHTS_DIR", "BENCH_FID_INCEPTION", "BENCH_LPIPS_ALEX")


def _crops(n: int, size: int, seed: int) -> list[np.ndarray]:
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = [data.astronaut(), data.coffee(), data.chelsea()]
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        y, x = rng.integers(0, src.shape[0] - size), rng.integers(0, src.shape[1] - size)
        out.append(np.ascontiguousarray(src[y:y + size, x:x + size]))
    return out


def _noisy(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def inception(tmp_path_factory: pytest.TempPathFactory):
    """A random Inception weights file under torch-fidelity's file name, hash accepted."""
    folder = tmp_path_factory.mktemp("weights")
    path = F.save_random_inception(folder / _PUBLISHED.filename, seed=7)
    with pytest.MonkeyPatch.context() as mp:
        for var in _ENV:
            mp.delenv(var, raising=False)
        mp.setattr(Inc, "INCEPTION_WEIGHTS", dataclasses.replace(_PUBLISHED, sha256=W.sha256_file(path)))
        yield path


@pytest.fixture()
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No weights anywhere: empty TORCH_HOME, no env variables, the published hash."""
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(Inc, "INCEPTION_WEIGHTS", _PUBLISHED)
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


def test_fid_kid_equal_torch_fidelity(inception: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import torch_fidelity

    refs = _crops(N_IMAGES, 64, seed=0)
    recs = [_noisy(r, 25.0, i) for i, r in enumerate(refs)]
    for name, images in (("rec", recs), ("ref", refs)):
        (tmp_path / name).mkdir()
        for i, im in enumerate(images):
            Image.fromarray(im).save(tmp_path / name / f"{i:03d}.png")
    expected = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "rec"), input2=str(tmp_path / "ref"), fid=True, kid=True,
        kid_subset_size=N_IMAGES, cuda=False, feature_extractor_weights_path=str(inception),
        save_cpu_ram=True, cache=False, verbose=False, batch_size=N_IMAGES)

    cache = RefCache(tmp_path / "cache")
    fid = F.FID(weights_dir=str(inception.parent), device="cpu", cache=cache)
    kid = F.KID(weights_dir=str(inception.parent), device="cpu", cache=cache, subset_size=N_IMAGES)
    fid_states, kid_states = [], []
    for i, (ref, rec) in enumerate(zip(refs, recs)):
        pair = Pair(Sample(f"img{i}", ref), rec, 0)
        for metric, states in ((fid, fid_states), (kid, kid_states)):
            state = metric.init()
            assert metric.update(state, pair) == {}
            states.append(unpack_states(pack_states({metric.name: state}))[metric.name])  # as stored
    assert cache.computes == N_IMAGES  # FID and KID share the reference features

    with caplog.at_level(logging.WARNING, logger="bench"):
        got_fid = fid.compute(fid.merge_all(fid_states))
    got_kid = kid.compute(kid.merge_all(kid_states[::-1]))
    # N = 8 < 2048: torch-fidelity's 2048×2048 eigvals adds the roots of ~2040 spurious near-zero
    # eigenvalues (its value ~1e-5 relative low, see tests/test_dataset_values.py); ours is exact
    assert got_fid["fid"] == pytest.approx(expected["frechet_inception_distance"], rel=3e-5)
    rec_f, ref_f, _ = fid.features_of(fid.merge_all(fid_states))
    x1, x2 = rec_f - rec_f.mean(0), ref_f - ref_f.mean(0)
    small = (x1 @ x2.T) @ (x2 @ x1.T) / (N_IMAGES - 1) ** 2  # N×N: the non-zero eigenvalues of Σ₁Σ₂
    exact = (np.sum((rec_f.mean(0) - ref_f.mean(0)) ** 2) + np.trace(np.cov(rec_f, rowvar=False))
             + np.trace(np.cov(ref_f, rowvar=False)) - 2 * np.sqrt(np.linalg.eigvals(small).astype(complex)).real.sum())
    assert got_fid["fid"] == pytest.approx(float(exact), rel=1e-7)
    # subset = N: KID is the plain unbiased MMD² of all features, checked by hand in float64.
    rec, ref, _ = kid.features_of(kid.merge_all(kid_states))
    assert got_kid["kid"] == pytest.approx(_unbiased_mmd2(rec, ref), rel=1e-9)
    # torch-fidelity sums the kernel in float32 (merely re-ordering its inputs moves its value by
    # ~1e-8 here): allow 1e-6 of the kernel scale, absolute, on top of 1e-6 relative.
    scale = float(np.mean((rec @ ref.T / F.DIM + 1.0) ** 3))
    assert got_kid["kid"] == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-6, abs=1e-6 * scale)
    assert got_fid["fid"] > 1.0 and abs(got_kid["kid"]) > 1e-4  # not degenerate: a test that can fail
    assert got_fid["fid_n"] == N_IMAGES and got_fid["fid_low_n"] == 1.0 and got_fid["fid_patch"] == 0.0
    assert got_kid["kid_n"] == N_IMAGES and got_kid["kid_subset_size"] == N_IMAGES
    assert "biased" in caplog.text and f"N={N_IMAGES}" in caplog.text
    assert fid.describe()["weights_sha256"] == W.sha256_file(inception) and not fid.random_weights



def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(a, b) = (a·b / d + 1)³, by hand."""
    k = lambda a, b: (a @ b.T / a.shape[1] + 1.0) ** 3
    m = len(x)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    off = lambda g: (g.sum() - np.trace(g)) / (m * (m - 1))
    return float(off(kxx) + off(kyy) - 2 * kxy.mean())


class _Quantise(Codec):
    """Toy codec: quantises to ``rate`` levels (image bytes are the raw quantised pixels)."""

    name = "quantise"
    rate_knob = RateKnob("levels", (4, 8, 16), higher_is_better=True)

    def __init__(self, offset: int = 0) -> None:
        super().__init__()
        self.offset = offset

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Any = None) -> Encoded:
        step = 256 // int(rate)
        q = np.clip((image // step) * step + step // 2 + self.offset, 0, 255).astype(np.uint8)
        return Encoded({"image": q.tobytes(), "shape": np.array(q.shape, np.int32).tobytes()})

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        shape = tuple(np.frombuffer(parts["shape"], np.int32))
        return np.frombuffer(parts["image"], np.uint8).reshape(shape).copy()


class _Tiny(Dataset):
    name = "tiny"

    def __init__(self) -> None:
        self.images = {f"t{i}": im for i, im in enumerate(_crops(2, 32, seed=3))}

    def ids(self) -> list[str]:
        return sorted(self.images)

    def load(self, image_id: str) -> Sample:
        return Sample(image_id, self.images[image_id])

    def files(self, image_id: str) -> list[Path]:
        return []


def test_reference_features_computed_once_per_image(isolated: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """2 images × 2 codecs × 3 rates through the runner, FID and KID: 2 reference extractions.
    (A counting stand-in replaces the Inception forward: what is counted is the caching.)"""
    dataset, codecs = _Tiny(), [_Quantise(0), _Quantise(3)]
    codecs[1].name = "quantise_offset"
    originals = {im.tobytes() for im in dataset.images.values()}
    calls = {"ref": 0, "rec": 0}

    def counting(extractor: Any, images: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
        calls["ref" if images[0].tobytes() in originals else "rec"] += 1
        return np.stack([np.resize(im.astype(np.float64).ravel(), F.DIM) for im in images])

    monkeypatch.setattr(F, "inception_features", counting)
    monkeypatch.setattr(F, "_RECENT", RefCache(persist=False, capacity=16))
    cache = RefCache(tmp_path / "cache")
    opts = {"weights_dir": str(isolated), "allow_random_weights": True, "device": "cpu", "cache": cache}
    metrics = [F.FID(**opts), F.KID(**opts)]
    assert all(r.found for m in metrics for r in m.requirements())
    rows = [runner.evaluate_one(c, rate, dataset.load(i), dataset, metrics)
            for c in codecs for rate in c.rate_knob.values for i in dataset.ids()]
    assert all(r.status == "ok" for r in rows), [r.error for r in rows]
    assert calls == {"ref": 2, "rec": 12}  # KID reuses FID's reconstruction features too
    assert cache.computes == 2 and cache.misses == 2 and cache.hits == 2 * 2 * 3 * 2 - 2

    # a new process over the same cache directory extracts no reference at all
    again = RefCache(tmp_path / "cache")
    fid = F.FID(**{**opts, "cache": again})
    runner.evaluate_one(codecs[0], 4, dataset.load("t0"), dataset, [fid])
    assert again.computes == 0 and again.stats.disk_hits == 1 and calls["ref"] == 2

    per_rate = [r.states["fid"] for r in rows if r.codec == "quantise" and r.rate == "4"]
    rec, ref, _ = metrics[0].features_of(metrics[0].merge_all(per_rate))
    assert rec.shape == ref.shape == (2, F.DIM) and not np.array_equal(rec, ref)


def test_random_weights_mode_runs_the_real_network(isolated: Path, tmp_path: Path) -> None:
    metric = F.FID(weights_dir=str(isolated), allow_random_weights=True, device="cpu",
                   cache=RefCache(tmp_path, persist=False))
    image = _crops(1, 32, seed=4)[0]
    state = metric.init()
    metric.update(state, Pair(Sample("a", image), _noisy(image, 30.0, 0), 0))
    assert metric.random_weights and metric.describe()["random_weights"] is True
    assert "random-seed0" in metric.extractor_id()
    feats = state["ref"]
    assert feats.shape == (1, F.DIM) and np.isfinite(feats).all() and feats.std() > 1e-3
    assert not np.allclose(state["rec"], feats)


def test_merge_order_does_not_change_the_features() -> None:
    rng = np.random.default_rng(0)
    metric = F.KID(subsets=2)
    states = []
    for i in range(5):
        k = 1 + i % 2
        states.append({"rec": rng.normal(size=(k, F.DIM)), "ref": rng.normal(size=(k, F.DIM)),
                       "order": np.stack([np.full(k, rng.integers(0, 2**63), np.uint64),
                                          np.arange(k, dtype=np.uint64)], axis=1),
                       "patch_px": np.zeros(1)})
    a = metric.features_of(metric.merge_all(states))
    b = metric.features_of(metric.merge_all(states[::-1]))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert len(a[0]) == 7
    with pytest.raises(MetricError, match="mix patch sizes"):
        metric.features_of(metric.merge(states[0], {**states[1], "patch_px": np.array([256.0])}))


def test_patch_grid_follows_hific() -> None:
    origins = F.patch_origins(512, 768, 256)
    assert origins[:6] == [(0, 0), (0, 256), (0, 512), (256, 0), (256, 256), (256, 512)]
    assert origins[6:] == [(128, 128), (128, 384)]  # (⌊H/p⌋−1)·(⌊W/p⌋−1) shifted by p/2
    assert len(F.patch_origins(600, 700, 256)) == 2 * 2 + 1 * 1
    with pytest.raises(MetricError, match="smaller than"):
        F.patch_origins(200, 768, 256)


def test_patch_features_go_into_the_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Patch mode feeds exactly the grid patches (fake extractor: no network needed here)."""
    fed: list[list[np.ndarray]] = []

    def fake_features(extractor: Any, images: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
        fed.append(list(images))
        return np.stack([np.resize(im.astype(np.float64).ravel(), F.DIM) for im in images])

    metric = F.FID(patch=32, cache=RefCache(tmp_path, persist=False))
    monkeypatch.setattr(F, "inception_features", fake_features)
    monkeypatch.setattr(metric, "extractor_id", lambda: "fake/patch32")
    monkeypatch.setattr(metric, "extractor", lambda: None)
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    recon = 255 - image
    state = metric.init()
    metric.update(state, Pair(Sample("a", image), recon, 0))
    assert state["rec"].shape == (8, F.DIM) and state["ref"].shape == (8, F.DIM)  # 2·3 + 1·2 patches
    assert [p.shape for p in fed[0]] == [(32, 32, 3)] * 8
    np.testing.assert_array_equal(fed[0][6], image[16:48, 16:48])  # first shifted patch
    assert metric.features_of(state)[2] == 32.0 and metric.n_images(state) == 1


def test_missing_weights_error_names_file_hash_and_source(isolated: Path) -> None:
    metric = F.FID(weights_dir=str(isolated))  # cheap: nothing is loaded
    (req,) = metric.requirements()
    assert not req.found and _PUBLISHED.filename in req.detail
    with pytest.raises(WeightsError) as err:
        metric.extractor()
    text = str(err.value)
    assert _PUBLISHED.filename in text and _PUBLISHED.sha256 in text
    assert "github.com/toshas/torch-fidelity/releases" in text


def test_runner_skips_metrics_without_weights(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.metrics import lpips_metric

    monkeypatch.setattr(lpips_metric, "wheel_lin_path", lambda net, version="0.1": None)
    metrics, skipped = runner.resolve_metrics(["all"], {"weights_dir": str(isolated)})
    reasons = dict(skipped)
    assert {"fid", "kid", "lpips"} <= set(reasons)
    assert _PUBLISHED.filename in reasons["fid"] and "alexnet-owt-7be5be79.pth" in reasons["lpips"]
    assert not {"fid", "kid", "lpips"} & {m.name for m in metrics}
    with pytest.raises(UnavailableError):
        runner.resolve_metrics(["fid"], {"weights_dir": str(isolated)})
