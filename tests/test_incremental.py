"""No repeated work: content cache across runs, batching, worker pool (issue 8)."""

from __future__ import annotations

import fakes_bench
import numpy as np
import pytest

from bench.execution.runner import RunConfig, execute
from bench.metrics import BUILTIN
from bench.storage.store import Store


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setitem(BUILTIN, "countmae", ("fakes_bench:CountingMetric", "counting MAE"))
    monkeypatch.setenv("FAKE_CODEC_LOG", str(tmp_path / "encodes.log"))
    fakes_bench.CountingMetric.pairs_seen = 0
    fakes_bench.CountingMetric.batches = []
    fakes_bench.use_fakes(tmp_path, monkeypatch, 3)
    return tmp_path / "encodes.log"


def _rows(store, run_id):
    return {(r.codec, r.rate, r.image_id): r for r in store.rows(run_id)}


def test_adding_a_rate_point_computes_only_the_new_rows(env, store_path):
    log = env
    with Store(store_path) as store:
        first = execute(RunConfig("pngs", ["quant"], ["psnr", "countmae"], rates={"quant": ["32", "16"]}),
                        store, progress=False)
        assert fakes_bench.encode_log_lines(log) == 6 and fakes_bench.CountingMetric.pairs_seen == 6
        second = execute(RunConfig("pngs", ["quant"], ["psnr", "countmae"], rates={"quant": ["32", "16", "4"]}),
                         store, progress=False)
        assert second != first  # a different run …
        assert fakes_bench.encode_log_lines(log) == 6 + 3  # … that coded only the new rate point
        assert fakes_bench.CountingMetric.pairs_seen == 6 + 3  # and measured only it
        old, new = _rows(store, first), _rows(store, second)
    assert len(new) == 9
    for key, row in old.items():  # reused rows are identical, states included
        assert new[key].bytes == row.bytes and new[key].metrics == row.metrics
        assert np.array_equal(new[key].states["countmae"]["sum"], row.states["countmae"]["sum"])


def test_adding_a_codec_computes_only_that_codec(env, store_path):
    log = env
    with Store(store_path) as store:
        execute(RunConfig("pngs", ["quant"], ["countmae"]), store, progress=False)
        assert fakes_bench.encode_log_lines(log) == 9
        execute(RunConfig("pngs", ["quant", "crashy"], ["countmae"]), store, progress=False)
        assert fakes_bench.encode_log_lines(log) == 9 + 3


def test_adding_a_metric_reencodes_but_reuses_other_metric_results(env, store_path):
    with Store(store_path) as store:
        execute(RunConfig("pngs", ["quant"], ["countmae"]), store, progress=False)
        seen = fakes_bench.CountingMetric.pairs_seen
        run_id = execute(RunConfig("pngs", ["quant"], ["countmae", "psnr"]), store, progress=False)
        assert fakes_bench.CountingMetric.pairs_seen == seen  # countmae came from the cache
        assert all("psnr" in r.metrics and "countmae" in r.metrics for r in store.rows(run_id))


@pytest.mark.parametrize("keep_again", [True, False])
def test_kept_reconstructions_make_a_new_metric_free_of_codec_calls(env, store_path, keep_again):
    """Reconstructions kept by one run serve a later run, whether or not that one keeps them."""
    log = env
    with Store(store_path) as store:
        execute(RunConfig("pngs", ["quant"], ["countmae"], keep_reconstructions=True), store, progress=False)
        run_id = execute(RunConfig("pngs", ["quant"], ["countmae", "psnr"], keep_reconstructions=keep_again), store,
                         progress=False)
        assert all("psnr" in r.metrics for r in store.rows(run_id))
        execute(RunConfig("pngs", ["quant"], ["countmae", "psnr", "msssim"]), store, progress=False)
    assert fakes_bench.encode_log_lines(log) == 9


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_size_and_workers_do_not_change_results(env, store_path, tmp_path, workers):
    results = []
    for batch in (1, 8):
        with Store(tmp_path / f"s{batch}.sqlite") as store:
            run_id = execute(RunConfig("pngs", ["quant"], ["psnr", "msssim", "countmae"], batch_size=batch,
                                       workers=workers, use_cache=False), store, progress=False)
            results.append(_rows(store, run_id))
    assert max(fakes_bench.CountingMetric.batches) == 3  # the three rate points of an image in one batch
    assert 1 in fakes_bench.CountingMetric.batches
    a, b = results
    assert a.keys() == b.keys() and len(a) == 9
    for key in a:
        assert a[key].bytes == b[key].bytes and a[key].metrics == b[key].metrics


def test_network_metrics_do_not_depend_on_batch_size(tmp_path, monkeypatch):
    """LPIPS, FID/KID and mIoU (real architectures, seeded random weights) with batch 1 and 8."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "refcache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no real weights: random, marked
    options = {"allow_random_weights": True, "device": "cpu"}
    params = {"miou": {"segmenter_params": {"scale": 0.5, "input_size": "512x256"}}}
    results = []
    for batch in (1, 8):
        with Store(tmp_path / f"net{batch}.sqlite") as store:
            run_id = execute(RunConfig("demo", ["jpeg"], ["lpips", "fid", "miou"], limit=1, batch_size=batch,
                                       rates={"jpeg": ["5", "50", "90"]}, metric_options=options,
                                       metric_params=params, use_cache=False, workers=1), store, progress=False)
            rows = _rows(store, run_id)
            meta = store.run(run_id)["meta"]
            results.append(rows)
    assert all(meta["metrics"][m].get("random_weights") for m in ("lpips", "fid", "miou"))
    a, b = results
    assert len(a) == 3 and all(r.status == "ok" for r in a.values())
    for key in a:
        assert a[key].metrics["lpips"] == pytest.approx(b[key].metrics["lpips"], rel=1e-5)
        np.testing.assert_allclose(a[key].states["fid"]["rec"], b[key].states["fid"]["rec"], rtol=1e-4, atol=1e-6)
        for k in ("inter_orig", "union_orig", "inter_gt", "union_gt"):
            assert np.array_equal(a[key].states["miou"][k], b[key].states["miou"][k])
    lp = [a[("jpeg", r, "astronaut")].metrics["lpips"] for r in ("5", "50", "90")]
    assert lp[0] > lp[1] > lp[2]  # even random-weight LPIPS falls as quality rises


def test_metric_identity_names_its_weights_before_any_key_is_made(tmp_path, monkeypatch):
    """Run ids and cache keys come from describe(): it must say 'random weights' (or the
    weights' sha256) before the first image, or a later run with real weights would reuse
    random-weight results."""
    from bench.execution.resultcache import identity
    from bench.metrics.fidelity import FID
    from bench.metrics.lpips_metric import LPIPS

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for metric in (LPIPS(allow_random_weights=True), FID(allow_random_weights=True)):
        metric.prepare()
        assert '"random_weights": true' in identity(metric)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "refcache"))
    with Store(tmp_path / "s.sqlite") as store:
        run_id = execute(RunConfig("demo", ["jpeg"], ["lpips"], limit=1, rates={"jpeg": ["50"]}, workers=1,
                                   metric_options={"allow_random_weights": True}), store, progress=False)
        keys = [k for (k,) in store.db.execute("SELECT key FROM metric_cache")]
    assert len(keys) == 1 and run_id.startswith("demo-")
    from bench.datasets.demo import DemoDataset
    from bench.execution.resultcache import coded_key, metric_key, sample_key
    from bench.registry import catalog as cat

    sample = DemoDataset().get("astronaut")
    jpeg = cat.make_codec("jpeg")
    random_lpips = LPIPS(allow_random_weights=True)
    random_lpips.prepare()
    ckey = coded_key(sample_key(sample), identity(jpeg), "50")
    assert keys == [metric_key(ckey, identity(random_lpips))]
    assert keys != [metric_key(ckey, identity(LPIPS(allow_random_weights=True)))]  # unprepared identity differs
