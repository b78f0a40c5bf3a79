"""Per-metric results, identical reconstructions and KID subsets.

* A metric's failure is that metric's on that image: a 150-px image keeps its PSNR and bpp
  while its MS-SSIM records an error (summary N per metric, marked values, failures list).
* One identical reconstruction gives finite dataset values and ``n_identical == 1``.
* KID's value is torch-fidelity's (``kid_features_to_metric``, whole set for N ≤ 1000) and
  ``kid_std`` comes from subsets smaller than N, so it is no longer always 0.
"""

from __future__ import annotations

import json
import math
import sqlite3

import fakes_bench
import numpy as np
import pytest
from PIL import Image

from bench.datasets.base import Sample
from bench.execution.pipeline import measure
from bench.execution.runner import RunConfig, execute
from bench.metrics.pixel import MSSSIM, PSNR
from bench.report import failures, per_image, summarise, to_markdown, write_report
from bench.report.console import render_console
from bench.storage.store import Row, Store


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


# ----------------------------------------------------------------------------- a metric fails on one image
@pytest.fixture()
def small_image_run(tmp_path, monkeypatch, store_path):
    data = fakes_bench.use_fakes(tmp_path, monkeypatch, 2)  # img000, img001: 168×176
    Image.fromarray(_smooth(150, 176, 9)).save(data / "img002.png")  # under MS-SSIM's 161 px
    config = RunConfig(dataset="pngs", codecs=["quant"], metrics=["psnr", "msssim"], rates={"quant": ["16", "4"]})
    with Store(store_path) as store:
        run_id = execute(config, store, progress=False)
        yield store, run_id


def test_small_image_keeps_psnr_and_bpp_while_msssim_records_error(small_image_run, tmp_path):
    store, run_id = small_image_run
    rows = list(store.rows(run_id))
    assert len(rows) == 6 and all(r.status == "ok" for r in rows)
    small = [r for r in rows if r.image_id == "img002"]
    for r in small:
        assert math.isfinite(r.metrics["psnr"]) and r.bpp == 8 * sum(r.bytes.values()) / (150 * 176)
        assert "msssim" not in r.metrics and "msssim" not in r.states and "psnr" in r.states
        assert "161" in r.metric_errors["msssim"] and set(r.metric_errors) == {"msssim"}
    assert all(not r.metric_errors and "msssim" in r.metrics for r in rows if r.image_id != "img002")

    df = summarise(store, run_id)
    for rate in ("16", "4"):
        s = df[df.rate == rate].iloc[0]
        at = [r for r in rows if r.rate == rate]
        assert (s.n_ok, s.n_failed, s.n_psnr, s.n_msssim) == (3, 0, 3, 2)
        # PSNR and bpp keep the 150-px image; MS-SSIM is over the two others
        assert s.bpp == pytest.approx(np.mean([r.bpp for r in at]), rel=1e-12)
        assert s.psnr == pytest.approx(np.mean([r.metrics["psnr"] for r in at]), rel=1e-12)
        assert s.msssim == pytest.approx(np.mean([r.metrics["msssim"] for r in at if "msssim" in r.metrics]),
                                         rel=1e-12)
    md = to_markdown(df)
    header = md.splitlines()[0]
    assert "n MS-SSIM" in header and "n PSNR" not in header  # only the count that differs from n ok is printed
    msssim_col = [c.strip() for c in header.split("|")].index("MS-SSIM ↑")
    cells = [[c.strip() for c in line.split("|")] for line in md.splitlines()[2:2 + len(df)]]
    assert all(row[msssim_col].endswith("†") for row in cells)
    assert "computed on fewer images" in md
    assert "n MS-SSIM" in render_console(df)

    fails = failures(store, run_id)
    assert list(fails.columns) == ["image_id", "codec", "rate", "metric", "error"]
    assert sorted(zip(fails.image_id, fails.rate, fails.metric)) == [("img002", "16", "msssim"),
                                                                    ("img002", "4", "msssim")]
    tidy = per_image(store, run_id)
    err = tidy.set_index(["image_id", "rate"])["error_msssim"]
    assert "161" in err["img002", "16"] and err.drop(index="img002", level=0).isna().all()

    paths = write_report(store, run_id, tmp_path / "report")
    assert (tmp_path / "report" / "failures.csv") in paths


def test_intervals_of_a_metric_that_failed_on_one_image_use_the_images_it_was_computed_on(small_image_run):
    from bench.analysis.stats import Bootstrap, replicates
    from bench.report.intervals import add_intervals, run_metrics

    store, run_id = small_image_run
    run, rows = store.run(run_id), [r for r in store.rows(run_id) if r.rate == "16"]
    boot = Bootstrap(resamples=200, seed=3)
    counts = boot.counts(len(rows))
    reps = replicates(rows, run_metrics(run, rows), counts).values
    # dataset-level values, not per-image means: msssim_db is the dB of each replicate's mean MS-SSIM
    np.testing.assert_allclose(reps["msssim_db"], -10 * np.log10(1 - reps["msssim"]), rtol=1e-12)
    have = [i for i, r in enumerate(rows) if "msssim" in r.states]
    assert len(have) == 2
    mean = (counts[:, have] @ np.array([rows[i].metrics["msssim"] for i in have])) / counts[:, have].sum(1)
    np.testing.assert_allclose(reps["msssim"], mean, rtol=1e-12)  # NaN where neither image was drawn
    df = add_intervals(summarise(store, run_id), store, run_id, boot=boot)
    for key in ("msssim_db_mean", "psnr_of_mean_mse", "msssim"):
        lo, hi, value = df[f"{key}_lo"], df[f"{key}_hi"], df[key]
        assert (np.isfinite(lo) & (lo <= value + 1e-9) & (value - 1e-9 <= hi)).all(), key


def test_codec_failure_and_metric_failure_both_listed(tmp_path, store_path):
    with Store(store_path) as store:
        store.begin_run("r", {}, {"metrics": {"psnr": {"name": "psnr"}}})
        store.put("r", Row("quant", "4", "a", status="error", error="cannot load image: OSError"))
        store.put("r", Row("quant", "4", "b", height=2, width=2, bytes={"image": 3}, bpp=6.0,
                           metrics={"psnr": 30.0}, metric_errors={"msssim": "too small", "lpips": "OOM"}))
        fails = failures(store, "r")
        assert store.done_keys("r", include_errors=False) == set()  # --retry-failed retries both
    assert fails.to_dict("records") == [
        {"image_id": "a", "codec": "quant", "rate": "4", "metric": "", "error": "cannot load image: OSError"},
        {"image_id": "b", "codec": "quant", "rate": "4", "metric": "lpips", "error": "OOM"},
        {"image_id": "b", "codec": "quant", "rate": "4", "metric": "msssim", "error": "too small"}]


def test_batch_failure_is_retried_image_by_image():
    """A batch with one too-small image: its batch mate still gets MS-SSIM."""
    big, small = _smooth(176, 176, 1), _smooth(150, 176, 2)
    samples = [Sample("big", big), Sample("small", small)]
    recons = [np.clip(big.astype(int) + 3, 0, 255).astype(np.uint8), small]
    rows = [Row("c", "1", s.id, bytes={"image": 10}) for s in samples]
    measure([MSSSIM(), PSNR()], samples, rows, recons, batch_size=8)
    assert "msssim" in rows[0].metrics and not rows[0].metric_errors
    assert "msssim" not in rows[1].metrics and "161" in rows[1].metric_errors["msssim"]
    assert math.isinf(rows[1].metrics["psnr"]) and rows[1].status == "ok"


def test_store_written_before_metric_errors_opens_and_migrates(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL,
                           config TEXT NOT NULL, meta TEXT NOT NULL, status TEXT NOT NULL);
        CREATE TABLE rows (run_id TEXT NOT NULL, codec TEXT NOT NULL, rate TEXT NOT NULL, image_id TEXT NOT NULL,
                           status TEXT NOT NULL, error TEXT, height INTEGER, width INTEGER, bytes TEXT, bpp REAL,
                           metrics TEXT, states BLOB, seconds TEXT, created REAL NOT NULL, notes TEXT,
                           PRIMARY KEY (run_id, codec, rate, image_id));
        INSERT INTO runs VALUES ('old', 0, 0, '{}', '{}', 'finished');
        INSERT INTO rows VALUES ('old', 'jpeg', '50', 'x', 'ok', NULL, 2, 2, '{"image": 4}', 8.0, '{"psnr": 31.0}',
                                 NULL, '{}', 0, '{}');
    """)
    db.commit()
    db.close()
    with Store(path) as store:
        (old,) = list(store.rows("old"))
        assert old.metric_errors == {} and old.metrics == {"psnr": 31.0}
        store.put("old", Row("jpeg", "60", "x", metric_errors={"msssim": "too small"}))
        assert {r.rate: r.metric_errors for r in store.rows("old")} == {"50": {}, "60": {"msssim": "too small"}}
    raw = sqlite3.connect(path).execute("SELECT metric_errors FROM rows WHERE rate = '60'").fetchone()[0]
    assert json.loads(raw) == {"msssim": "too small"}


# ----------------------------------------------------------------------------- identical reconstructions
def test_one_identical_image_gives_finite_dataset_values(tmp_path, monkeypatch, store_path):
    """quant at step 2 decodes to 2·⌊v/2⌋ + 1: an image of odd values comes back identical."""
    data = fakes_bench.use_fakes(tmp_path, monkeypatch, 2)
    odd = (_smooth(168, 176, 5) | 1).astype(np.uint8)
    Image.fromarray(odd).save(data / "img002.png")
    config = RunConfig(dataset="pngs", codecs=["quant"], metrics=["psnr", "msssim"], rates={"quant": ["2"]})
    with Store(store_path) as store:
        run_id = execute(config, store, progress=False)
        rows = {r.image_id: r for r in store.rows(run_id)}
        df = summarise(store, run_id)
    assert math.isinf(rows["img002"].metrics["psnr"]) and rows["img002"].metrics["mse"] == 0
    others = [rows[i] for i in ("img000", "img001")]
    assert all(math.isfinite(r.metrics["psnr"]) for r in others)
    s = df.iloc[0]
    assert s.n_identical == 1 and s.n_psnr == 3 and s.psnr_n == 2
    for key in ("psnr", "psnr_of_mean_mse", "msssim", "msssim_db", "msssim_db_mean"):
        assert math.isfinite(s[key]), key
    # psnr: mean over the non-identical images; psnr_of_mean_mse: all three (MSE 0 included)
    assert s.psnr == pytest.approx(np.mean([r.metrics["psnr"] for r in others]), rel=1e-12)
    mean_mse = np.mean([r.metrics["mse"] for r in rows.values()])
    assert s.psnr_of_mean_mse == pytest.approx(10 * math.log10(255 ** 2 / mean_mse), rel=1e-12)
    mean_msssim = np.mean([r.metrics["msssim"] for r in rows.values()])
    assert s.msssim_db == pytest.approx(-10 * math.log10(1 - mean_msssim), rel=1e-12)
    finite_db = [r.metrics["msssim_db"] for r in rows.values() if math.isfinite(r.metrics["msssim_db"])]
    assert s.msssim_db_mean == pytest.approx(np.mean(finite_db), rel=1e-12)
    md = to_markdown(df)
    assert "n identical" in md.splitlines()[0] and "reconstructions equal to the original" in md


def test_all_identical_is_infinite_not_nan():
    p = PSNR()
    state = p.init()
    img = _smooth(8, 8, 0)
    p.update(state, fakes_pair(img, img))
    out = p.compute(state)
    assert math.isinf(out["psnr"]) and math.isinf(out["psnr_of_mean_mse"]) and out["n_identical"] == 1
    assert out["psnr_n"] == 0


def fakes_pair(ref: np.ndarray, rec: np.ndarray):
    from bench.metrics.base import Pair

    return Pair(Sample("x", ref), rec, 0)


# ----------------------------------------------------------------------------- KID subsets
@pytest.mark.parametrize("n", [12, 9])
def test_kid_value_and_spread_match_torch_fidelity(n):
    """kid: torch-fidelity's whole-set value (N ≤ 1000); kid_std: its spread over subsets of N // 2."""
    import torch
    from torch_fidelity.metric_kid import kid_features_to_metric

    from bench.metrics.fidelity import DIM, KID, kid_subset_size

    rng = np.random.default_rng(n)
    rec = rng.normal(0.1, 1.0, (n, DIM))
    ref = rng.normal(0.0, 1.0, (n, DIM))
    state = {"rec": rec, "ref": ref, "order": np.stack([np.arange(n, dtype=np.uint64), np.zeros(n, np.uint64)], 1),
             "patch_px": np.zeros(n)}
    got = KID(allow_random_weights=True).compute(state)

    def tf(size: int, subsets: int) -> dict[str, float]:
        return kid_features_to_metric(torch.from_numpy(rec), torch.from_numpy(ref), kid_subsets=subsets,
                                      kid_subset_size=size, rng_seed=2020, verbose=False)

    # torch-fidelity's own protocol (100 draws of the whole set differ only by summation order)
    assert got["kid"] == pytest.approx(tf(n, 100)["kernel_inception_distance_mean"], rel=1e-12)
    assert got["kid"] == tf(n, 1)["kernel_inception_distance_mean"]
    assert tf(n, 100)["kernel_inception_distance_std"] < 1e-12 * abs(got["kid"])  # the old, uninformative 0
    assert kid_subset_size(n) == n // 2 and got["kid_std_subset_size"] == n // 2
    assert got["kid_std"] == tf(n // 2, 100)["kernel_inception_distance_std"] and got["kid_std"] > 0
    assert (got["kid_subset_size"], got["kid_subsets"], got["kid_n"]) == (n, 1, n)


def test_kid_subset_rules():
    from bench.metrics.fidelity import KID, kid_subset_size

    assert [kid_subset_size(n) for n in (0, 1, 2, 3, 4, 5, 1999, 2000, 5000)] == [0, 0, 0, 0, 2, 2, 999, 1000, 1000]
    rng = np.random.default_rng(0)
    state = {"rec": rng.normal(size=(3, 2048)), "ref": rng.normal(size=(3, 2048)), "patch_px": np.zeros(3)}
    got = KID(allow_random_weights=True).compute(state)  # no two distinct subsets: no spread to report
    assert got["kid_subset_size"] == 3 and math.isnan(got["kid_std"]) and math.isfinite(got["kid"])
    big = {"rec": rng.normal(size=(10, 2048)), "ref": rng.normal(size=(10, 2048)), "patch_px": np.zeros(10)}
    got = KID(subset_size=4, subsets=20, allow_random_weights=True).compute(big)  # subsets < N: their own spread
    assert (got["kid_subset_size"], got["kid_subsets"], got["kid_std_subset_size"]) == (4, 20, 4)
    assert got["kid_std"] > 0
