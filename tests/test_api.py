"""The public Python API: evaluate() with names and in-memory Codec instances, load_results, summary."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import bench
from bench import evaluate, load_results, summary
from bench.api import UncachedCodecWarning
from bench.cli import main
from bench.codecs.base import Codec, Encoded, RateKnob
from bench.codecs.pillow_codecs import JpegCodec
from bench.report.export import read_export


def _volatile(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("seconds_")]


def test_import_bench_stays_cheap():
    code = "import bench, sys; print(sorted(m for m in ('pandas', 'torch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert bench.evaluate is evaluate and callable(bench.load_results)


def test_instance_rows_equal_cli_rows_of_the_card(tmp_path, capsys):
    """A JpegCodec built in this process gives the rows `bench run --codecs jpeg` + `bench export` give."""
    rows = evaluate([JpegCodec()], "demo", metrics=["psnr"], rates=[20, 50], limit=2, store=tmp_path / "api")
    out = tmp_path / "cli"
    assert main(["--out", str(out), "run", "--codecs", "jpeg", "--dataset", "demo", "--metrics", "psnr",
                 "--limit", "2", "--rates", "jpeg=20,50", "--no-report", "-q"]) == 0
    assert main(["--out", str(out), "export", "latest", "-o", str(tmp_path / "rows.csv")]) == 0
    capsys.readouterr()
    cli = read_export(tmp_path / "rows.csv")
    assert list(rows.columns) == list(cli.columns)
    assert len(rows) == 4 and set(rows["rate"]) == {"20", "50"} and (rows["status"] == "ok").all()
    # same declared identity (name, version, params) → same run id and identical values
    assert rows["run_id"].iloc[0] == cli["run_id"].iloc[0]
    def norm(df: pd.DataFrame) -> pd.DataFrame:  # CSV reads a missing error back as NaN, the store gives None
        df = df.drop(columns=_volatile(df)).reset_index(drop=True)
        return df.astype(object).where(df.notna(), np.nan)

    pd.testing.assert_frame_equal(norm(rows), norm(cli), check_dtype=False)
    pd.testing.assert_frame_equal(rows.drop(columns=_volatile(rows)),  # exactly, from the CLI's store
                                  (lambda d: d.drop(columns=_volatile(d)))(load_results(out, "latest")))
    # bpp from the real bytes, PSNR by hand for one row
    from bench.datasets.demo import DemoDataset

    sample = DemoDataset().get("astronaut")
    enc = JpegCodec().encode(sample.image, 50)
    rec = JpegCodec().decode(enc.parts)
    mse = np.mean((sample.image.astype(float) - rec.astype(float)) ** 2)
    row = rows[(rows["image_id"] == "astronaut") & (rows["rate"] == "50")].iloc[0]
    assert row["bpp"] == 8 * len(enc.parts["image"]) / (256 * 512)
    assert row["psnr"] == pytest.approx(10 * np.log10(255 ** 2 / mse), abs=1e-9)


class _UserJpeg(Codec):
    """What a researcher writes around a model: no version, so no identity."""

    name = "userjpeg"
    rate_knob = RateKnob("quality", (30, 70), higher_is_better=True)

    def __init__(self) -> None:
        self.encodes = 0

    def encode(self, image, rate, *, semantics=None):
        self.encodes += 1
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=int(rate))
        return Encoded(parts={"image": buf.getvalue()})

    def decode(self, parts):
        return np.asarray(Image.open(io.BytesIO(parts["image"])).convert("RGB"))


class _VersionedJpeg(_UserJpeg):
    name = "verjpeg"
    version = "user-1"


def test_undeclared_instance_is_never_cached_and_warns_once(tmp_path):
    codec = _UserJpeg()
    store = tmp_path / "bench.sqlite"
    with pytest.warns(UncachedCodecWarning, match="userjpeg"):
        first = evaluate(codec, "demo", metrics=["psnr"], limit=2, store=store)
    assert codec.encodes == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncachedCodecWarning)  # said once only
        second = evaluate(codec, "demo", metrics=["psnr"], limit=2, store=store)
    assert codec.encodes == 8  # computed again: neither the store nor the content cache was reused
    assert first["run_id"].iloc[0] != second["run_id"].iloc[0]
    cols = ["codec", "rate", "image_id", "bpp", "psnr"]
    pd.testing.assert_frame_equal(first[cols], second[cols])


def test_declared_instance_resumes_and_reads_back(tmp_path):
    codec = _VersionedJpeg()
    store = tmp_path / "bench.sqlite"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncachedCodecWarning)
        rows = evaluate([codec, "jpeg"], "demo", metrics="psnr", rates={"verjpeg": [30, 70], "jpeg": [50]},
                        limit=2, store=store, tag="t1")
        again = evaluate([codec, "jpeg"], "demo", metrics="psnr", rates={"verjpeg": [30, 70], "jpeg": [50]},
                         limit=2, store=store, tag="t1")
    assert codec.encodes == 4  # second call: same run id, every row already stored
    assert rows["run_id"].iloc[0] == again["run_id"].iloc[0]
    assert set(zip(rows["codec"], rows["rate"])) == {("verjpeg", "30"), ("verjpeg", "70"), ("jpeg", "50")}
    loaded = load_results(store, tag="t1")
    pd.testing.assert_frame_equal(loaded.drop(columns=_volatile(loaded)), rows.drop(columns=_volatile(rows)))
    assert load_results(store, codec="jpeg")["codec"].unique().tolist() == ["jpeg"]
    table = summary(store)
    assert len(table) == 3 and (table["n_ok"] == 2).all()
    for rec in table.itertuples():
        sel = rows[(rows["codec"] == rec.codec) & (rows["rate"] == rec.rate)]
        assert rec.bpp == pytest.approx(sel["bpp"].mean())
        assert rec.psnr == pytest.approx(sel["psnr"].mean())


def test_protocol_is_passed_to_the_runner(tmp_path):
    from dataclasses import fields

    from bench.api import make_config
    from bench.errors import ConfigError
    from bench.execution.runner import RunConfig

    with pytest.raises(ConfigError, match="protocol"):  # refused by the runner (or by an older RunConfig)
        evaluate("jpeg", "demo", metrics="psnr", rates=[50], limit=1, protocol="no-such-protocol", store=tmp_path)
    if "protocol" in {f.name for f in fields(RunConfig)}:
        rows = evaluate("jpeg", "demo", metrics="psnr", rates=[50], limit=1, protocol="card", store=tmp_path)
        from bench.storage.store import Store

        with Store(tmp_path / "bench.sqlite") as store:
            assert store.run(rows["run_id"].iloc[0])["meta"]["protocol"]["name"] == "card"
    config = make_config("jpeg,webp", "demo", rates=[(0.4, 0.6), 10], metrics="psnr,msssim")
    assert config.codecs == ["jpeg", "webp"] and config.metrics == ["psnr", "msssim"]
    assert config.rates == {"*": ["0.4:0.6", "10"]}
