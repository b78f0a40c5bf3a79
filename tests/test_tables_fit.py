"""Tables that fit: console ≤ 100 columns with its footnotes, LaTeX tables of ≤ 8 columns,
bold best only when asked, rates in numeric order everywhere, ``bench list`` ≤ 100 columns."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from test_figures_layout import summary

from bench.report.console import render_console
from bench.report.latex import to_latex_tables
from bench.report.order import rate_key, rate_order, sort_frame
from bench.storage.store import Row, Store


def full_metric_summary() -> pd.DataFrame:
    """A full-metric run's columns, random weights and paper rates included."""
    df = summary()
    df["msssim"], df["msssim_db"], df["msssim_db_mean"] = 0.95, 13.0, 13.1
    df["psnr_of_mean_mse"], df["mse"], df["n_identical"] = 30.0, 20.0, 0
    df["miou_gt (random weights)"], df["miou_gt_img (random weights)"] = 0.4, 0.41
    df["iou_gt/road"], df["iou_gt/car"], df["bpp_image"], df["n_fid"] = 0.9, 0.5, df["bpp"], 6
    return df


def test_console_table_of_a_full_metric_run_fits_100_columns_with_its_footnotes():
    df = full_metric_summary()
    out = render_console(df)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100, out
    head = lines[0]
    for name in ("codec", "rate", "bpp", "FID", "KID", "LPIPS", "PSNR", "MS-SSIM"):
        assert name in head
    assert "kid_subsets" not in out and "fid_n" not in out and "iou_gt/road" not in out
    assert "100.0000" not in out  # bookkeeping values never printed
    body = "\n".join(lines[2:2 + len(df)])
    notes = "\n".join(lines[2 + len(df):])
    assert "*" in body and notes.count("* FID from N < 2048") == 1  # every mark used is explained below
    assert "†" in body and "† computed on fewer images" in notes
    assert "° random weights" in notes and "°" in head
    assert "more columns in summary.csv" in notes
    picked = render_console(df, ["psnr_of_mean_mse", "mse"])
    assert "PSNR of mean MSE" in picked and "FID" not in picked.splitlines()[0]
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="--columns"):
        render_console(df, ["nope"])


def test_latex_tables_have_at_most_8_columns_and_bold_only_when_asked():
    df = full_metric_summary()
    tex = to_latex_tables(df)
    specs = re.findall(r"\\begin\{tabular\}\{([lr]+)\}", tex)
    assert len(specs) >= 2 and all(len(s) <= 8 for s in specs)
    assert tex.count(r"\toprule") == len(specs) and tex.count(r"\bottomrule") == len(specs)
    assert r"\textbf" not in tex
    bold = to_latex_tables(df, bold_best=True)
    # jpeg and webp share rate label "10": the better PSNR (webp, higher bpp) is bold, original never
    rows = [line for line in bold.splitlines() if line.startswith("webp & 10")]
    assert len(rows) == len(specs) and any(r"\textbf" in row for row in rows)
    assert not any(r"\textbf" in line for line in bold.splitlines() if line.startswith("original"))


def test_rates_sort_numerically():
    assert rate_order(["35", "5", "100", "10"]) == ["5", "10", "35", "100"]
    assert sorted(["0.4:0.4", "1:1", "0.05:1"], key=rate_key) == ["0.05:1", "0.4:0.4", "1:1"]
    df = pd.DataFrame({"codec": ["j"] * 4, "rate": ["35", "5", "100", "10"], "image_id": "a"})
    assert sort_frame(df, ("codec", "rate", "image_id"))["rate"].tolist() == ["5", "10", "35", "100"]


def test_load_results_and_summary_sort_rates_numerically(tmp_path):
    from bench.api import load_results

    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.begin_run("r", {"dataset": "d"}, {"dataset": {"name": "d"}, "codecs": {"j": {}}, "metrics": {}})
        for rate in ("35", "100", "5", "10"):
            store.put("r", Row("j", rate, "img", height=8, width=8, bytes={"image": 8}, bpp=1.0,
                               metrics={"psnr": 30.0}))
        store.finish_run("r")
    assert load_results(path, "r")["rate"].tolist() == ["5", "10", "35", "100"]
    from bench.api import summary as api_summary

    assert api_summary(path, "r")["rate"].tolist() == ["5", "10", "35", "100"]  # equal bpp: numeric order


def test_bench_list_lines_fit_100_columns(capsys):
    from bench.cli import main

    for what in ("codecs", "datasets", "metrics"):
        assert main(["list", what]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out and max(len(line) for line in out) <= 100
        assert main(["list", what, "--verbose"]) == 0
        verbose = capsys.readouterr().out.splitlines()
        assert len(verbose) > len(out) and max(len(line) for line in verbose) <= 100


def test_rounding_noise_below_zero_prints_without_a_minus_sign():
    """The original's FID against itself is −1.4e-14: tables print 0.0000, never −0.0000; a
    value that rounds to a non-zero negative keeps its sign."""
    from bench.report.tables import formatted

    df = pd.DataFrame({"codec": ["original", "jpeg"], "rate": ["lossless", "5"], "fid": [-1.421e-14, -0.002182]})
    cells, _ = formatted(df)
    assert list(cells["fid"]) == ["0.0000", "-0.0022"]
