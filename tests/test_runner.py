"""Runner and store: rows, bpp per part, resume after kill -9, failures recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fakes_bench
import numpy as np
import pytest
from PIL import Image

from bench.errors import ConfigError, UnavailableError, UnknownNameError
from bench.execution.runner import RunConfig, execute, make_plan
from bench.metrics import BUILTIN
from bench.registry import catalog
from bench.storage.store import Store

TESTS = Path(__file__).resolve().parent


@pytest.fixture()
def env(tmp_path, monkeypatch):
    return fakes_bench.use_fakes(tmp_path, monkeypatch, 4)


def _config(**kw) -> RunConfig:
    base = dict(dataset="pngs", codecs=["quant"], metrics=["psnr"])
    base.update(kw)
    return RunConfig(**base)


def test_rows_hold_bytes_per_part_and_exact_bpp(env, store_path):
    with Store(store_path) as store:
        run_id = execute(_config(metrics=["psnr", "msssim"]), store, progress=False)
        rows = list(store.rows(run_id))
    assert len(rows) == 4 * 3
    for row in rows:
        assert row.status == "ok", row.error
        assert set(row.bytes) == {"image", "side"} and row.bytes["side"] == 2
        total = sum(row.bytes.values())
        assert row.bpp == 8 * total / (168 * 176)
        assert row.metrics["bpp_side"] == 8 * 2 / (168 * 176)
        assert set(row.states) == {"psnr", "msssim"}
        assert row.notes.pop("image_sha256")  # the pixels it coded (tests/test_trust.py)
        assert row.notes == {"note": "quantised"}  # text notes are kept apart from the metrics
    # coarser quantiser step -> fewer bytes and lower PSNR on every image
    by = {(r.image_id, int(r.rate)): r for r in rows}
    for img in {r.image_id for r in rows}:
        assert by[img, 32].bpp < by[img, 16].bpp < by[img, 4].bpp
        assert by[img, 32].metrics["psnr"] < by[img, 16].metrics["psnr"] < by[img, 4].metrics["psnr"]


def test_same_command_twice_reuses_run_and_computes_nothing(env, store_path, tmp_path, monkeypatch):
    log = tmp_path / "encodes.log"
    monkeypatch.setenv("FAKE_CODEC_LOG", str(log))  # encodes run in worker processes
    with Store(store_path) as store:
        first = execute(_config(workers=2), store, progress=False)  # through the worker pool
        assert fakes_bench.encode_log_lines(log) == 12
        second = execute(_config(workers=2), store, progress=False)
        assert first == second
        assert fakes_bench.encode_log_lines(log) == 12
        assert store.count(first) == 12


def test_rates_option_and_bad_rate(env, store_path):
    with Store(store_path) as store:
        run_id = execute(_config(rates={"quant": ["8", "2"]}), store, progress=False)
        assert {r.rate for r in store.rows(run_id)} == {"8", "2"}
    assert make_plan(_config(rates={"quant": ["8", "8", "08", "2"]})).rates["quant"] == [8, 2]  # planned once
    with pytest.raises(ConfigError, match="outside"):
        make_plan(_config(rates={"quant": ["500"]}))


def test_corrupt_image_and_codec_crash_are_recorded_and_run_goes_on(env, store_path):
    (env / "img900.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    Image.fromarray(np.full((168, 176, 3), 255, np.uint8)).save(env / "img950.png")
    with Store(store_path) as store:
        run_id = execute(_config(codecs=["quant", "crashy"]), store, progress=False)
        rows = list(store.rows(run_id))
    # 6 images x (3 quant rates + 1 crashy rate)
    assert len(rows) == 6 * 4
    bad = [r for r in rows if r.image_id == "img900"]
    assert len(bad) == 4 and all(r.status == "error" and "cannot load image" in r.error for r in bad)
    crash = [r for r in rows if r.codec == "crashy" and r.image_id == "img950"]
    assert crash[0].status == "error" and "simulated encoder crash" in crash[0].error
    ok = [r for r in rows if r.status == "ok"]
    assert len(ok) == 24 - 4 - 1


def test_nan_metric_is_recorded_as_error(env, store_path, monkeypatch):
    monkeypatch.setitem(BUILTIN, "nanmetric", ("fakes_bench:NanMetric", "NaN"))
    catalog.reset()
    with Store(store_path) as store:
        run_id = execute(_config(metrics=["psnr", "nanmetric"], limit=1), store, progress=False)
        rows = list(store.rows(run_id))
    # the NaN is that metric's failure on that image: the row stays ok with its other values
    assert rows and all(r.status == "ok" and "NaN" in r.metric_errors["nanmetric"] for r in rows)
    assert all("nanmetric" not in r.metrics and "nanmetric" not in r.states for r in rows)
    assert all(np.isfinite(r.metrics["psnr"]) and r.bpp > 0 for r in rows)  # the other values are kept


def test_resume_after_kill_minus_9(env, store_path, tmp_path, monkeypatch):
    """A run killed with SIGKILL mid-way resumes: no row lost, none duplicated or recomputed."""
    log = tmp_path / "encodes.log"
    script = (
        "import sys; from bench.execution.runner import RunConfig, execute; from bench.storage.store import Store\n"
        "execute(RunConfig(dataset='pngs', codecs=['quant'], metrics=['psnr']), Store(sys.argv[1]), progress=False)\n"
    )
    env_vars = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                "FAKE_CODEC_SLEEP": "0.3", "FAKE_CODEC_LOG": str(log)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(store_path)], env=env_vars)
    deadline = time.time() + 60
    while time.time() < deadline:
        if store_path.exists():
            with Store(store_path) as s:
                runs = s.runs()
                if runs and s.count(runs[0]["run_id"]) >= 4:
                    break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Store(store_path) as store:
        run_id = store.runs()[0]["run_id"]
        done_before = store.count(run_id)
        assert 4 <= done_before < 12, "the kill must land mid-run"
        encodes_before = len(log.read_text().splitlines())
        monkeypatch.setenv("FAKE_CODEC_LOG", str(log))
        assert execute(RunConfig(dataset="pngs", codecs=["quant"], metrics=["psnr"]), store, progress=False) == run_id
        rows = list(store.rows(run_id))
    assert len(rows) == 12 and len({(r.codec, r.rate, r.image_id) for r in rows}) == 12
    assert all(r.status == "ok" for r in rows)
    encodes_after = len(log.read_text().splitlines()) - encodes_before
    # at most the missing rows were encoded again (fewer when the kill fell between two rows of
    # one image whose other codings were already cached by content)
    assert 12 - done_before - 2 <= encodes_after <= 12 - done_before


def test_metric_exception_is_recorded_and_run_goes_on(env, store_path, monkeypatch):
    from bench.metrics.pixel import PSNR

    def explode(self, state, pair):
        if pair.sample.id == "img001":
            raise RuntimeError("simulated out-of-memory")
        return original(self, state, pair)

    original = PSNR.update
    monkeypatch.setattr(PSNR, "update", explode)
    with Store(store_path) as store:
        run_id = execute(_config(), store, progress=False)
        rows = list(store.rows(run_id))
        assert store.run(run_id)["status"] == "finished"
    bad = [r for r in rows if r.image_id == "img001"]
    assert len(rows) == 12 and len(bad) == 3
    assert all(r.status == "ok" and "simulated out-of-memory" in r.metric_errors["psnr"] for r in bad)
    assert all("psnr" not in r.metrics and r.bpp > 0 for r in bad)
    assert all(r.status == "ok" and not r.metric_errors for r in rows if r.image_id != "img001")


def test_unknown_names_suggest_close_matches(env):
    with pytest.raises(UnknownNameError, match="did you mean quant"):
        make_plan(_config(codecs=["qant"]))
    with pytest.raises(UnknownNameError, match="psnr"):
        make_plan(_config(metrics=["psnrr"]))


def test_run_metadata_is_recorded(env, store_path):
    with Store(store_path) as store:
        run_id = execute(_config(limit=2), store, progress=False)
        run = store.run(run_id[:10])
    meta = run["meta"]
    assert meta["dataset"]["n_images"] == 2 and len(meta["dataset"]["content_hash"]) == 64
    assert meta["codecs"]["quant"]["version"] == "1"
    assert "numpy" in meta["packages"]
    assert run["status"] == "finished"
    json.dumps(meta)


def test_explicit_unavailable_codec_raises_but_all_skips(env, tmp_path, monkeypatch):
    cards = Path(os.environ["BENCH_CARD_PATH"])
    (cards / "codecs" / "nobin.yaml").write_text(
        "name: nobin\nentry: fakes_bench:QuantCodec\n")
    from bench.codecs.base import Requirement

    monkeypatch.setattr(fakes_bench.QuantCodec, "requirements",
                        lambda self: [Requirement("binary", "zzz", False, "build it")] if self.card["name"] == "nobin" else [])
    catalog.reset()
    with pytest.raises(UnavailableError, match="zzz"):
        make_plan(_config(codecs=["nobin"]))
    plan = make_plan(_config(codecs=["all"]))
    assert "nobin" not in [c.card["name"] for c in plan.codecs]
    assert any(name == "nobin" and "zzz" in why for name, why in plan.skipped)
