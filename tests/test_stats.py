"""Bootstrap intervals, paired comparisons, small-N marks and per-image evidence (issue 16)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import linalg

from bench.analysis.compare import compare
from bench.analysis.stats import Bootstrap, fid_from_features, merge_kind, percentile_intervals, replicates
from bench.cli import main
from bench.datasets.base import Dataset, Sample
from bench.execution.runner import RunConfig, evaluate_one, execute
from bench.metrics import fidelity as F
from bench.metrics.base import Pair
from bench.metrics.miou import MIoU, intersection_union
from bench.metrics.pixel import PSNR
from bench.report import column_info, load_run, summarise, to_latex, to_markdown, write_curves
from bench.report.console import render_console
from bench.report.evidence import per_image_iou, row_iou, worst_images
from bench.report.intervals import add_intervals, small_n
from bench.runtime.refcache import RefCache
from bench.storage.store import Row, Store


# -- the bootstrap itself -----------------------------------------------------------------
def test_counts_are_reproducible_for_a_fixed_seed_and_resample_with_replacement():
    a, b = Bootstrap(resamples=200, seed=3).counts(17), Bootstrap(resamples=200, seed=3).counts(17)
    assert np.array_equal(a, b) and a.shape == (200, 17)
    assert (a.sum(1) == 17).all() and (a >= 0).all() and (a > 1).any()  # with replacement
    assert not np.array_equal(a, Bootstrap(resamples=200, seed=4).counts(17))


def test_percentile_interval_covers_the_population_mean_in_at_least_90_percent_of_datasets():
    """200 synthetic datasets of 60 Gamma(4, 1) draws (population mean 4, skewed)."""
    samples = np.random.default_rng(11).gamma(4.0, 1.0, size=(200, 60))
    iv = percentile_intervals(samples, Bootstrap(resamples=1000, seed=5))
    covered = np.mean((iv[:, 0] <= 4.0) & (4.0 <= iv[:, 1]))
    assert 0.90 <= covered < 0.99  # nominal 95 %; not trivially wide either
    # the interval of each dataset brackets its own sample mean
    means = samples.mean(1)
    assert ((iv[:, 0] <= means) & (means <= iv[:, 1])).all()


def _pixel_rows(n: int, seed: int = 0) -> list[Row]:
    rng = np.random.default_rng(seed)
    psnr, miou = PSNR(), MIoU(segmenter="espnetv2", segmenter_params={"scale": 0.5}, allow_random_weights=True)
    rows = []
    for i in range(n):
        state = psnr.init()
        img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        rec = np.clip(img.astype(int) + rng.integers(-9, 10, img.shape), 0, 255).astype(np.uint8)
        values = psnr.update(state, Pair(Sample(f"i{i}", img), rec, 10))
        m = miou.init()
        pred, ref = rng.integers(0, 19, (8, 8)), rng.integers(0, 19, (8, 8))
        for key in ("gt", "orig"):
            inter, union = intersection_union(pred, ref if key == "gt" else (ref + i) % 19, 19)
            m[f"inter_{key}"] += inter
            m[f"union_{key}"] += union
            m[f"images_{key}"] += 1
        rows.append(Row("c", "1", f"i{i}", bpp=float(rng.uniform(0.1, 1.0)), metrics=values,
                        states={"psnr": state, "miou": m}))
    return rows


def test_sum_state_fast_path_equals_merge_all_of_the_drawn_states():
    rows = _pixel_rows(9)
    psnr, miou = PSNR(), MIoU(segmenter="espnetv2", segmenter_params={"scale": 0.5}, allow_random_weights=True)
    assert merge_kind(psnr) == merge_kind(miou) == "sum" and merge_kind(F.FID.__new__(F.FID)) == "concat"
    counts = Bootstrap(resamples=6, seed=1).counts(len(rows))
    reps = replicates(rows, {"psnr": psnr, "miou": miou}, counts).values
    for b, c in enumerate(counts):
        drawn = [r for r, m in zip(rows, c) for _ in range(m)]
        ref_p = psnr.compute(psnr.merge_all(r.states["psnr"] for r in drawn))
        ref_m = miou.compute(miou.merge_all(r.states["miou"] for r in drawn))
        assert reps["psnr"][b] == pytest.approx(ref_p["psnr"], rel=1e-12)
        assert reps["miou_gt"][b] == pytest.approx(ref_m["miou_gt"], rel=1e-12)
        assert reps["miou_orig"][b] == pytest.approx(ref_m["miou_orig"], rel=1e-12)
        assert reps["bpp"][b] == pytest.approx(np.mean([r.bpp for r in drawn]), rel=1e-12)
        assert reps["mse"][b] == pytest.approx(np.mean([r.metrics["mse"] for r in drawn]), rel=1e-12)


# -- FID / KID from cached features ---------------------------------------------------------
@pytest.mark.parametrize("n", [30, 200])  # N < D (N×N nuclear norm) and N > D (D×D form)
def test_fid_from_features_equals_torch_fidelity(n):
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    rng = np.random.default_rng(n)
    a = rng.normal(size=(n, 64)) @ rng.normal(size=(64, 64))
    b = rng.normal(0.3, 1.0, size=(n, 64)) @ rng.normal(size=(64, 64))
    ref = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(a)),
                                   fid_features_to_statistics(torch.from_numpy(b)), False)[KEY_METRIC_FID]
    # and an independent scipy form of the same formula
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    direct = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2).real)
    assert fid_from_features(a, b) == pytest.approx(float(ref), rel=1e-7)
    assert fid_from_features(a, b) == pytest.approx(direct, rel=1e-7)


class _Tiny(Dataset):
    name = "tiny"

    def __init__(self, n: int = 10) -> None:
        rng = np.random.default_rng(0)
        self.images = {f"t{i}": rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for i in range(n)}

    def ids(self) -> list[str]:
        return list(self.images)

    def load(self, image_id: str) -> Sample:
        return Sample(image_id, self.images[image_id])

    def files(self, image_id: str) -> list[Path]:
        return []


def _features_of(image: np.ndarray) -> np.ndarray:
    """Deterministic stand-in features: a hash-seeded 2048-vector shifted by the image mean."""
    seed = int.from_bytes(np.ascontiguousarray(image).tobytes()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng(seed).normal(image.mean() / 50.0, 1.0, F.DIM)


def test_fid_kid_intervals_need_no_network_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows measured through the runner (a counting stand-in for the Inception forward);
    the bootstrap then resamples the stored features: zero further calls."""
    calls = {"n": 0}

    def counting(extractor: Any, images: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
        calls["n"] += 1
        return np.stack([_features_of(im) for im in images])

    monkeypatch.setattr(F, "inception_features", counting)
    monkeypatch.setattr(F, "_RECENT", RefCache(persist=False, capacity=64))
    opts = {"allow_random_weights": True, "device": "cpu", "weights_dir": str(tmp_path),
            "cache": RefCache(tmp_path / "cache", persist=False)}
    fid, kid = F.FID(**opts), F.KID(**opts, subsets=10)
    monkeypatch.setattr(fid, "extractor_id", lambda: "fake")
    monkeypatch.setattr(kid, "extractor_id", lambda: "fake")
    monkeypatch.setattr(fid, "extractor", lambda: None)
    monkeypatch.setattr(kid, "extractor", lambda: None)
    from fakes_bench import QuantCodec

    dataset, codec = _Tiny(12), QuantCodec()
    rows = [evaluate_one(codec, 8, dataset.load(i), dataset, [fid, kid]) for i in dataset.ids()]
    assert all(r.status == "ok" for r in rows) and calls["n"] > 0
    before = calls["n"]

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the bootstrap ran the network")

    monkeypatch.setattr(F, "inception_features", no_network)
    fresh_fid, fresh_kid = F.FID(**opts), F.KID(**opts, subsets=10)  # a report builds fresh metrics
    monkeypatch.setattr(fresh_fid, "extractor", no_network)
    monkeypatch.setattr(fresh_kid, "extractor", no_network)
    boot = Bootstrap(resamples=40, heavy_resamples=15, seed=2)
    reps = replicates(rows, {"fid": fresh_fid, "kid": fresh_kid}, boot.counts(len(rows)), boot.heavy_resamples)
    assert calls["n"] == before  # zero network calls
    assert len(reps.values["fid"]) == len(reps.values["kid"]) == 15
    assert np.isfinite(reps.values["fid"]).all() and reps.values["fid"].std() > 0
    # the full sample (all multiplicities 1) gives the metric's value on the features
    rec, ref, _ = fid.features_of(fid.merge_all(r.states["fid"] for r in rows))
    full = replicates(rows, {"fid": fresh_fid, "kid": fresh_kid}, np.ones((1, len(rows))))
    assert full.values["fid"][0] == pytest.approx(fid_from_features(rec, ref), rel=1e-9)
    assert full.values["kid"][0] == pytest.approx(kid.compute(kid.merge_all(r.states["kid"] for r in rows))["kid"])
    lo, hi = boot.interval(reps.values["fid"])
    assert lo < hi
    # a resample's KID equals torch-fidelity's KID of the materialised multiset (N ≤ 1000: one subset)
    c = boot.counts(len(rows))[0]
    drawn = kid.merge_all(r.states["kid"] for r, m in zip(rows, c) for _ in range(m))
    assert reps.values["kid"][0] == pytest.approx(kid.compute(drawn)["kid"], rel=1e-9)


# -- runs on the demo set -------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """JPEG on the demo photos, PSNR only: q20+q50, the same again, and q45."""
    out = tmp_path_factory.mktemp("stats")
    path = out / "bench.sqlite"
    with Store(path) as store:
        def run(tag: str, rates: list[str]) -> str:
            return execute(RunConfig("demo", ["jpeg"], ["psnr"], rates={"jpeg": rates}, tag=tag, workers=1,
                                     use_cache=False), store, progress=False)

        ids = {"a": run("a", ["20", "50"]), "again": run("again", ["20", "50"]), "q45": run("q45", ["45"])}
    return {"out": out, "path": path, **ids}


def test_report_intervals_are_reproducible_and_bracket_the_value(demo):
    with Store(demo["path"]) as store:
        loaded = load_run(store, demo["a"])
        df = summarise(store, demo["a"], loaded)
        one = add_intervals(df, store, demo["a"], loaded, Bootstrap(resamples=300, seed=1))
        two = add_intervals(df, store, demo["a"], loaded, Bootstrap(resamples=300, seed=1))
        other = add_intervals(df, store, demo["a"], loaded, Bootstrap(resamples=300, seed=2))
    assert one[["psnr_lo", "psnr_hi", "bpp_lo", "bpp_hi"]].equals(two[["psnr_lo", "psnr_hi", "bpp_lo", "bpp_hi"]])
    assert not one["psnr_lo"].equals(other["psnr_lo"])
    assert (one["psnr_lo"] < one["psnr"]).all() and (one["psnr"] < one["psnr_hi"]).all()
    assert (one["bpp_lo"] < one["bpp"]).all() and (one["bpp"] < one["bpp_hi"]).all()
    assert one.attrs["ci"]["seed"] == 1 and one.attrs["ci"]["resamples"] == 300
    cols = list(one.columns)
    assert cols[cols.index("psnr") + 1: cols.index("psnr") + 3] == ["psnr_lo", "psnr_hi"]
    # Markdown: value ± half-width; LaTeX: a [lo, hi] column; CSV keeps lo/hi; no lo/hi in printed headers
    md = to_markdown(one)
    row = one.iloc[0]
    assert f"{row['psnr']:.2f} ± {(row['psnr_hi'] - row['psnr_lo']) / 2:.2f}" in md
    assert "psnr_lo" not in md and "300 resamples, seed 1" in md
    tex = to_latex(one)
    assert f"[{row['psnr_lo']:.2f}, {row['psnr_hi']:.2f}]" in tex and r"95\% CI" in tex
    assert "±" in render_console(one)


def test_report_and_figures_accept_ci_on_the_command_line(demo, tmp_path):
    rc = main(["--out", str(demo["out"]), "report", demo["a"], "--ci", "--ci-resamples", "200",
               "--dest", str(tmp_path / "rep")])
    assert rc == 0
    csv = pd.read_csv(tmp_path / "rep" / "summary.csv")
    assert {"psnr_lo", "psnr_hi", "bpp_lo", "bpp_hi"} <= set(csv.columns)
    assert (tmp_path / "rep" / "rd_psnr.png").stat().st_size > 0
    rc = main(["--out", str(demo["out"]), "figures", demo["a"], "--preset", "sqgan-fig12", "--ci",
               "--ci-resamples", "100", "--dest", str(tmp_path / "fig")])
    assert rc == 0 and (tmp_path / "fig" / "sqgan-fig12.pdf").stat().st_size > 0
    for bad in (["--ci-resamples", "5"], ["--ci-heavy-resamples", "-5"], ["--ci-heavy-resamples", "0"]):
        assert main(["--out", str(demo["out"]), "report", demo["a"], "--ci", *bad, "--dest", str(tmp_path / "x")]) == 2


def test_paired_run_against_itself_is_exactly_zero_with_zero_width(demo):
    with Store(demo["path"]) as store:
        result = compare(store, demo["a"], demo["again"], metrics=["psnr"],
                         ci=Bootstrap(resamples=200, seed=0), min_images=5)
    p = result.paired
    assert set(p["metric"]) == {"bpp", "psnr"} and set(p["rate_a"]) == {"20", "50"}
    assert (p["delta"] == 0).all() and (p["delta_lo"] == 0).all() and (p["delta_hi"] == 0).all()
    assert not p["significant"].any() and (p["n_images"] == 5).all()
    m = result.metrics.iloc[0]
    assert m["bd_rate_lo"] == m["bd_rate_hi"] == 0.0 and m["bd_metric_lo"] == m["bd_metric_hi"] == 0.0
    assert m["significant"] == "same" and not result.gate("significant") and not result.gate()


def test_degraded_jpeg_quality_is_flagged_significant_and_the_same_setting_is_not(demo, capsys):
    with Store(demo["path"]) as store:
        result = compare(store, demo["a"], demo["q45"], metrics=["psnr"], rate_map={"50": "45"},
                         ci=Bootstrap(resamples=500, seed=0), min_images=5)
    psnr = result.paired[result.paired["metric"] == "psnr"].iloc[0]
    assert (psnr["rate_a"], psnr["rate_b"]) == ("50", "45")
    assert psnr["delta"] < 0 and psnr["delta_hi"] < 0 and psnr["significant"]
    assert result.gate("significant") and "psnr regressed significantly" in result.significant_regressions[0]
    out = demo["out"]
    assert main(["--out", str(out), "compare", demo["a"], demo["q45"], "--metric", "psnr", "--pair-rate", "50=45",
                 "--gate", "significant", "--ci-resamples", "300", "--min-images", "5"]) == 6
    assert "SIGNIFICANT REGRESSION: jpeg: psnr" in capsys.readouterr().out
    assert main(["--out", str(out), "compare", demo["a"], demo["again"], "--metric", "psnr",
                 "--gate", "significant", "--ci-resamples", "300", "--min-images", "5"]) == 0
    assert "no significant regression" in capsys.readouterr().out
    # the default gate is unchanged: the tolerance gate has no shared rate label to judge here
    assert main(["--out", str(out), "compare", demo["a"], demo["q45"], "--metric", "psnr"]) == 0


# -- small N ------------------------------------------------------------------------------
def test_small_n_values_are_marked_in_every_table_and_figure(tmp_path):
    df = pd.DataFrame({"codec": ["c", "c"], "rate": ["1", "2"], "n_ok": [50, 3000], "n_failed": [0, 0],
                       "bpp": [0.2, 0.5], "fid": [40.0, 20.0], "fid_n": [50.0, 3000.0], "psnr": [30.0, 33.0]})
    infos = column_info(df)
    assert small_n(df, "fid", infos).tolist() == [True, False]
    assert not small_n(df, "psnr", infos).any()
    md = to_markdown(df)
    assert "40.00*" in md and "20.00*" not in md and "N < 2048" in md and "N here: 50–3000" in md
    assert "40.00*" in to_latex(df) and "40.00*" in render_console(df)
    paths = write_curves(df, tmp_path, ["fid"])
    assert paths and all(p.stat().st_size > 0 for p in paths)


# -- per-image evidence -------------------------------------------------------------------
def test_per_image_iou_comes_from_each_rows_state_and_feeds_export_and_worst(tmp_path):
    rows = _pixel_rows(4)
    expected = []
    for r in rows:
        s = r.states["miou"]
        iou = s["inter_orig"] / np.where(s["union_orig"] > 0, s["union_orig"], 1)
        expected.append(float(np.mean(iou[s["union_orig"] > 0])))
    got = [row_iou(r)["miou_orig_img"] for r in rows]
    assert got == pytest.approx(expected, rel=1e-12)
    df = per_image_iou(rows)
    assert df["iou_drop_orig"].tolist() == pytest.approx([1 - v for v in expected])
    # export carries them
    from bench.report.export import tidy_rows

    path = tmp_path / "b.sqlite"
    with Store(path) as store:
        store.begin_run("r1", {"dataset": "x"}, {"metrics": {}})
        for r in rows:
            r.height, r.width = 16, 16
            store.put("r1", r)
        tidy = tidy_rows(store, "r1")
        # a run whose mIoU averaged over all classes (SQ-GAN's protocol): per image, still the classes
        # present in either map of that image (issue 24: a clean image scores 1 whatever the averaging)
        store.begin_run("r2", {"dataset": "x"}, {"metrics": {"miou": {"name": "miou", "average": "all"}}})
        expected_all = []
        for r in rows:
            s = r.states["miou"]
            for key in ("inter_orig", "union_orig"):
                s[key] = np.asarray(s[key]).copy()
                s[key][:2] = 0  # two classes absent from this image
            iou = s["inter_orig"] / np.where(s["union_orig"] > 0, s["union_orig"], 1)
            expected_all.append(float(np.mean(iou[s["union_orig"] > 0])))  # absent classes do not count
            assert float(iou.sum() / len(iou)) < expected_all[-1]  # what "all" would have given
            store.put("r2", r)
        tidy_all = tidy_rows(store, "r2")
    assert tidy["miou_orig_img"].tolist() == pytest.approx(expected)
    assert tidy_all["miou_orig_img"].tolist() == pytest.approx(expected_all, rel=1e-12)
    assert "miou_gt_img" in tidy and "iou_drop_orig" in tidy
    # the worst images: largest IoU drop and lowest PSNR
    images = tidy.assign(status="ok")
    worst = worst_images(images, k=2)
    drop = worst[worst["criterion"].str.contains("IoU drop")]
    assert drop["image_id"].iloc[0] == rows[int(np.argmin(expected))].image_id and len(drop) == 2
    low = worst[worst["criterion"].str.contains("PSNR")]
    assert low["value"].iloc[0] == min(r.metrics["psnr"] for r in rows)


def test_export_and_html_take_per_image_iou_from_the_states_with_the_random_mark():
    """One helper serves export and the HTML report: a stale column of the same name gives way
    to the value recomputed from the state, and a random-weights mIoU is marked."""
    from bench.report.evidence import with_image_iou
    from bench.report.summary import RANDOM_MARK

    rows = _pixel_rows(3)
    truth = [row_iou(r)["miou_orig_img"] for r in rows]
    frame = pd.DataFrame({"codec": [r.codec for r in rows], "rate": [r.rate for r in rows],
                          "image_id": [r.image_id for r in rows], "miou_orig_img": [-1.0] * 3})
    frame.attrs = {"random_metrics": []}
    got = with_image_iou(frame, rows, {"meta": {}})
    assert got["miou_orig_img"].tolist() == pytest.approx(truth) and got.attrs == {"random_metrics": []}
    frame.attrs = {"random_metrics": ["miou"]}
    marked = with_image_iou(frame, rows, {"meta": {}})
    assert marked["miou_orig_img" + RANDOM_MARK].tolist() == pytest.approx(truth)
    assert marked["miou_orig_img"].tolist() == [-1.0] * 3  # not a column of the recomputed set
    worst = worst_images(marked.assign(status="ok"), k=1)
    drop = worst[worst["criterion"].str.contains("IoU drop")]  # one codec × rate: the single worst
    assert drop["value"].tolist() == pytest.approx([1 - min(truth)])
    assert drop["image_id"].tolist() == [rows[int(np.argmin(truth))].image_id]


def test_html_report_lists_the_worst_images_with_crops(demo):
    from bench.report import per_image
    from bench.report.html import HtmlOptions, render_html

    with Store(demo["path"]) as store:
        images = per_image(store, demo["a"])
        bpp20 = float(images[images["rate"] == "20"]["bpp"].mean())
        page = render_html(store, [demo["a"]], HtmlOptions(worst=2, bpp=bpp20))
    lowest = images[images["rate"] == "20"].sort_values("psnr").iloc[0]["image_id"]
    section = page.split("<h3>Worst images</h3>", 1)[1]
    assert "<h4>jpeg@a</h4>" in section and "lowest PSNR" in section  # a tagged run: codec@tag
    assert "<td class=key>20</td>" in section and "at rate 20 (nearest" in section  # crops at --bpp's rate
    assert f"original {lowest}" in section  # its crop is shown
    assert section.count("data:image/webp;base64") == 2  # original + reconstruction thumbnails (one criterion)
    with Store(demo["path"]) as store:  # --ci: intervals in the page's table
        page = render_html(store, [demo["a"]], HtmlOptions(crops=False, worst=0, ci=Bootstrap(resamples=100)))
    assert " ± " in page.split("<h3>Summary</h3>", 1)[1].split("</table>", 1)[0] and "Worst images" not in page


def test_bd_rate_interval_of_a_noisy_setting_excludes_zero(tmp_path, monkeypatch):
    """Same bytes, decoder noise of ±12 (test_compare.TunableQuant) over 6 images and 4 rate
    points: BD-rate > 0 with an interval above 0; the reverse direction is significant gain."""
    import fakes_bench

    fakes_bench.use_fakes(tmp_path, monkeypatch, 6, {
        "codecs/quant.yaml": "name: quant\nentry: test_compare:TunableQuant\nrates: [32, 16, 8, 4]\n"})
    with Store(tmp_path / "bench.sqlite") as store:
        def run(**kw: Any) -> str:
            return execute(RunConfig(dataset="pngs", codecs=["quant"], metrics=["psnr"], workers=1, **kw), store,
                           progress=False)

        good, bad = run(tag="good"), run(tag="bad", codec_params={"quant": {"noise": 12}})
        worse = compare(store, good, bad, metrics=["psnr"], ci=Bootstrap(resamples=200, seed=0), min_images=6)
        better = compare(store, bad, good, metrics=["psnr"], ci=Bootstrap(resamples=200, seed=0), min_images=6)
    m = worse.metrics.iloc[0]
    assert m["basis"] == "bd_rate" and m["bd_rate_lo"] > 0 and m["bd_rate_lo"] <= m["bd_rate_pct"] <= m["bd_rate_hi"]
    assert m["bd_rate_defined"] == 1.0 and m["ci_images"] == 6 and m["significant"] == "worse"
    assert worse.gate("significant") and "BD-rate" in worse.significant_regressions[0]
    assert better.metrics.iloc[0]["significant"] == "better" and not better.gate("significant")
    # paired per-point differences: same bytes (zero-width bpp difference), lower PSNR everywhere
    p = worse.paired
    assert (p.loc[p["metric"] == "bpp", ["delta", "delta_lo", "delta_hi"]] == 0).all().all()
    assert (p.loc[p["metric"] == "psnr", "delta_hi"] < 0).all()
