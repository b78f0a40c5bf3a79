"""Trust under attack (issue 23, items 9-14 and 16-18): the gate never trusts an unfinished
run or a handful of images, numbers are finite, byte parts are bytes, rows carry what they
coded, hostile store files, images, tags and signals end as one line with the right code."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fakes_bench
from bench.analysis.compare import compare
from bench.analysis.stats import Bootstrap
from bench.cli import main
from bench.errors import ConfigError, IncompleteRunError, TooFewImagesError
from bench.execution.runner import RunConfig, execute
from bench.storage.store import Store

QUANT = "name: quant\nentry: test_compare:TunableQuant\nrates: [32, 16, 8, 4]\n"


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """6 PNGs, the quant codec with a ``noise`` setting (test_compare.TunableQuant)."""
    fakes_bench.use_fakes(tmp_path, monkeypatch, 6, {"codecs/quant.yaml": QUANT})
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "refcache"))
    return tmp_path


def _execute(store: Store, **kw: Any) -> str:
    cfg: dict[str, Any] = dict(dataset="pngs", codecs=["quant"], metrics=["psnr"], workers=1)
    cfg.update(kw)
    return execute(RunConfig(**cfg), store, progress=False)


def _kill_after(path: Path, run_id: str, keep: int) -> list[str]:
    """Make ``run_id`` look killed after its first ``keep`` images: later rows gone, status running."""
    con = sqlite3.connect(path)
    with con:
        ids = sorted({i for (i,) in con.execute("SELECT image_id FROM rows WHERE run_id = ?", (run_id,))})
        con.executemany("DELETE FROM rows WHERE run_id = ? AND image_id = ?", [(run_id, i) for i in ids[keep:]])
        con.execute("UPDATE runs SET status = 'running' WHERE run_id = ?", (run_id,))
    con.close()
    return ids[:keep]


def _main(argv: list[str]) -> int:
    """``main`` with argparse's usage errors (SystemExit) as their exit code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# -- 9: compare on incomplete runs ------------------------------------------------------------
def test_compare_refuses_an_unfinished_run_and_compares_only_common_images_when_allowed(env, capsys):
    db = env / "bench.sqlite"
    with Store(db) as store:
        good = _execute(store, tag="good")
        bad = _execute(store, tag="bad", codec_params={"quant": {"noise": 12}})
        psnr = {(r.rate, r.image_id): r.metrics["psnr"] for r in store.rows(good)}
    kept = _kill_after(db, bad, 2)
    capsys.readouterr()
    assert main(["--out", str(env), "compare", good, bad]) == IncompleteRunError.exit_code == 5
    line = _one_error(capsys.readouterr().err)
    assert f"run {bad} did not finish every image" in line and "2 compared" in line and "--allow-partial" in line
    with Store(db, readonly=True) as store, pytest.raises(IncompleteRunError):
        compare(store, good, bad)
    # allowed: only the 2 images both finished, said so; the point values are means over those 2
    assert main(["--out", str(env), "compare", good, bad, "--allow-partial"]) == 6
    out = capsys.readouterr().out
    assert "images: 2 compared, only those both runs finished (run A finished 6 of 6, run B 2 of 6)" in out
    with Store(db, readonly=True) as store:
        result = compare(store, good, bad, allow_partial=True)
    assert result.images == 2 and not result.complete
    p = result.points.set_index("rate").loc["16"]
    assert p["value_a"] == pytest.approx(np.mean([psnr[("16", i)] for i in kept]))
    # complete runs say how many images were compared
    assert main(["--out", str(env), "compare", good, "--anchor", "quant", "--test",
                 "quant"]) == 0
    assert "images: 6 compared (every image of both runs)" in capsys.readouterr().out


# -- 10: minimum N for --gate significant ----------------------------------------------------
def test_significant_gate_needs_a_minimum_number_of_images_and_prints_n(env, capsys):
    db = env / "bench.sqlite"
    with Store(db) as store:
        good = _execute(store, tag="good")
        bad = _execute(store, tag="bad", codec_params={"quant": {"noise": 12}})
        result = compare(store, good, bad, ci=Bootstrap(resamples=200))
    assert result.too_few_images == ["quant: psnr interval from N=6 images (minimum 10)"]
    with pytest.raises(TooFewImagesError, match="N=6 images"):
        result.gate("significant")
    capsys.readouterr()
    argv = ["--out", str(env), "compare", good, bad, "--gate", "significant", "--ci-resamples", "200"]
    assert main(argv) == TooFewImagesError.exit_code == 5
    captured = capsys.readouterr()
    assert "too few images to judge significance" in _one_error(captured.err)
    assert "TOO FEW IMAGES" in captured.out
    # the minimum is configurable; N is printed beside every interval
    assert main([*argv, "--min-images", "6"]) == 6
    out = capsys.readouterr().out
    assert "N=6 images" in out and "images" in out.split("Bjøntegaard intervals")[1].splitlines()[1]
    assert main([*argv, "--min-images", "1"]) == 2


# -- 11: non-finite tolerances ---------------------------------------------------------------
@pytest.mark.parametrize("extra", [["--tolerance", "nan"], ["--tolerance", "inf"], ["--tolerance=-inf"],
                                   ["--delta-tolerance", "psnr=nan"], ["--delta-tolerance", "psnr=inf"]])
def test_non_finite_tolerances_are_refused(env, capsys, extra):
    with Store(env / "bench.sqlite") as store:
        good = _execute(store, tag="good")
        bad = _execute(store, tag="bad", codec_params={"quant": {"noise": 12}})
    capsys.readouterr()
    assert _main(["--out", str(env), "compare", good, bad, *extra]) == 2
    assert "finite" in _one_error(capsys.readouterr().err)
    with Store(env / "bench.sqlite", readonly=True) as store, pytest.raises(ConfigError, match="finite"):
        compare(store, good, bad, tolerance=float("nan"))
    assert _main(["--out", str(env), "sweep", "--codec", "quant", "--checkpoints", str(env / "none*"),
                 "--dataset", "pngs", "--tolerance", "inf"]) == 2
