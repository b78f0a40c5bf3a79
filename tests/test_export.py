"""`bench export`: one tidy row per image × codec × rate that reads back to the stored rows."""

from __future__ import annotations

import json
import math
import sys

import fakes_bench
import numpy as np
import pytest

from bench.cli import main
from bench.errors import UnavailableError
from bench.execution.runner import RunConfig, execute
from bench.report.export import export_run, read_export, tidy_rows
from bench.storage.store import Row, Store


@pytest.fixture()
def stored(tmp_path, monkeypatch):
    data = fakes_bench.use_fakes(tmp_path, monkeypatch, 3)
    (data / "img999.png").write_bytes(b"not a png")  # one unreadable image: error rows are exported too
    with Store(tmp_path / "bench.sqlite") as store:
        run = execute(RunConfig(dataset="pngs", codecs=["quant"], metrics=["psnr"], workers=1), store, progress=False)
        rows = list(store.rows(run))
    return tmp_path, run, rows


def _check_round_trip(df, rows: list[Row], run: str) -> None:
    assert len(df) == len(rows) == 4 * 3
    assert set(df["run_id"]) == {run}
    by_key = {(r.codec, r.rate, r.image_id): r for r in rows}
    assert {(c, str(rt), i) for c, rt, i in zip(df["codec"], df["rate"], df["image_id"])} == set(by_key)
    for rec in df.to_dict(orient="records"):
        row = by_key[(rec["codec"], str(rec["rate"]), rec["image_id"])]
        assert rec["status"] == row.status
        if row.status != "ok":
            assert "cannot load image" in rec["error"]
            assert rec["bpp"] is None or math.isnan(rec["bpp"])
            continue
        assert rec["bpp"] == row.bpp  # exact: full float precision in every format
        assert rec["psnr"] == row.metrics["psnr"] and rec["mse"] == row.metrics["mse"]
        assert rec["bpp_side"] == row.metrics["bpp_side"]
        for part, n in row.bytes.items():
            assert rec[f"bytes_{part}"] == n
        assert rec["height"] == row.height and rec["width"] == row.width
        assert rec["seconds_encode"] == row.seconds["encode"]


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_round_trips_the_rows(stored, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    tmp, run, rows = stored
    assert main(["--out", str(tmp), "export", run, "--format", fmt]) == 0
    path = tmp / run / f"rows.{fmt}"
    _check_round_trip(read_export(path), rows, run)


def test_json_is_plain_records_with_null_for_missing(stored):
    tmp, run, _rows = stored
    with Store(tmp / "bench.sqlite") as store:
        path = export_run(store, run, tmp / "x.json")
    records = json.loads(path.read_text())  # strict JSON: no NaN tokens
    bad = [r for r in records if r["status"] == "error"]
    assert len(bad) == 3 and all(r["bpp"] is None and r["psnr"] is None for r in bad)
    assert "NaN" not in path.read_text()


def test_tidy_rows_columns(stored):
    tmp, run, _rows = stored
    with Store(tmp / "bench.sqlite") as store:
        df = tidy_rows(store, run)
    assert list(df.columns[:5]) == ["run_id", "codec", "rate", "image_id", "status"]
    assert {"bpp", "bpp_image", "bpp_side", "bytes_image", "bytes_side", "psnr", "mse"} <= set(df.columns)
    ok = df[df["status"] == "ok"]
    np.testing.assert_allclose(ok["bpp"], 8 * (ok["bytes_image"] + ok["bytes_side"]) / (168 * 176))


def test_parquet_without_pyarrow_says_how_to_install(stored, monkeypatch, capsys):
    tmp, run, _rows = stored
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    with Store(tmp / "bench.sqlite") as store, pytest.raises(UnavailableError, match="pip install pyarrow"):
        export_run(store, run, tmp / "rows.parquet")
    assert main(["--out", str(tmp), "export", run, "--format", "parquet"]) == UnavailableError.exit_code
    assert "pip install pyarrow" in capsys.readouterr().err
