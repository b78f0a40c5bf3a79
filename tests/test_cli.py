"""The ``bench`` command line end to end on the bundled demo data."""

from __future__ import annotations

import json
import sqlite3

import pytest

from bench.cli import main


@pytest.fixture()
def offline(tmp_path, monkeypatch):
    """No weights anywhere: a fresh torch hub cache, no weights dir, a private reference cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BENCH_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("BENCH_ESPNETV2_WEIGHTS", raising=False)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "refcache"))
    return tmp_path


def _rows(db):
    con = sqlite3.connect(db)
    try:
        return [(c, r, json.loads(m)) for c, r, m in con.execute("SELECT codec, rate, metrics FROM rows")]
    finally:
        con.close()


def test_readme_command_writes_tables_and_curves(offline, capsys):
    out = offline / "results"
    rc = main(["--out", str(out), "run", "--codecs", "jpeg2000,jpeg,webp", "--dataset", "demo", "--limit", "2",
               "--rates", "jpeg2000=0.1,0.4", "--rates", "jpeg=10,50", "--rates", "webp=10,50", "-q"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    # network metrics without weights are skipped, each with its reason
    for name in ("lpips", "fid", "kid", "miou"):
        assert f"skipping {name}" in captured.err
    rows = _rows(out / "bench.sqlite")
    assert len(rows) == 2 * 6 and all("psnr" in m and "msssim" in m for _c, _r, m in rows)
    report = next(p for p in out.iterdir() if p.is_dir())
    names = {p.name for p in report.iterdir()}
    assert {"summary.md", "summary.csv", "summary.tex", "rd_psnr.png", "rd_psnr.pdf"} <= names
    assert "jpeg2000" in (report / "summary.md").read_text()


def test_all_metrics_with_random_weights_are_written_and_marked(offline, capsys):
    out = offline / "results"
    rc = main(["--out", str(out), "run", "--codecs", "jpeg2000", "--dataset", "demo", "--limit", "1",
               "--rates", "0.1,0.8", "--metrics", "all", "--allow-random-weights", "--workers", "1", "-q",
               "--param", "miou.segmenter_params={scale: 0.5, input_size: 512x256}"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = _rows(out / "bench.sqlite")
    assert len(rows) == 2
    for _c, _r, m in rows:
        assert {"psnr", "msssim", "lpips", "miou_orig_img", "miou_gt_img"} <= set(m)
    md = next(out.glob("*/summary.md")).read_text()
    for metric in ("FID", "KID", "LPIPS", "mIoU"):
        assert metric.lower() in md.lower()
    assert "random weights" in md


def test_list_and_doctor_explain_what_is_missing(offline, capsys):
    assert main(["list", "codecs"]) == 0
    listing = capsys.readouterr().out
    assert "jpeg2000" in listing and "available" in listing
    assert main(["doctor"]) == 0
    screen = capsys.readouterr().out
    assert "fid" in screen and "not found" in screen and "demo" in screen


def test_unknown_codec_is_an_error_with_a_suggestion(offline, capsys):
    rc = main(["--out", str(offline / "r"), "run", "--codecs", "jpg2000", "--dataset", "demo"])
    assert rc == 2
    assert "did you mean jpeg2000" in capsys.readouterr().err
