"""Two rates: SQ-GAN's paper formula rate beside the real bpp in summary, export, figures and compare.

One tiny random-init SQ-GAN (as in test_sqgan.py) and JPEG on one demo image, two runs
(tags a, b: the second is served from the result cache). The paper rate is SQ-GAN's
official bound, (10·int(512·m) + 512) / (256·512) per branch, checked by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from bench.analysis.compare import compare
from bench.cli import main
from bench.execution.runner import RunConfig, execute
from bench.report import rate_view, summarise, to_markdown, write_report
from bench.report.export import export_run, read_export
from bench.report.figures import figure, load_runs, write_figure
from bench.report.rates import paper_values
from bench.storage.store import Row, Store

# the authors' sample.py bound per branch, by hand, at 256×512
BOUND = {0.4: (10 * 204 + 512) / 131072, 0.6: (10 * 307 + 512) / 131072, 1.0: (10 * 512 + 512) / 131072}
PAPER = {"0.4:0.6": BOUND[0.4] + BOUND[0.6], "1:1": 2 * BOUND[1.0]}
IMAGE_TERM = {"0.4:0.6": BOUND[0.4], "1:1": BOUND[1.0]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    from test_sqgan import _spread_codebooks

    from bench.codecs.sqgan.checkpoint import save_official_layout
    from bench.codecs.sqgan.config import make_config
    from bench.codecs.sqgan.model import SQGAN

    tmp = tmp_path_factory.mktemp("paper")
    torch.manual_seed(1)
    ckpt = save_official_layout(_spread_codebooks(SQGAN(make_config("tiny"))), tmp / "tiny.ckpt")
    store_path = tmp / "results" / "bench.sqlite"
    ids = []
    with Store(store_path) as store:
        for tag in ("a", "b"):
            config = RunConfig(dataset="demo", codecs=["sqgan", "jpeg"], metrics=["psnr"], limit=1, tag=tag,
                               rates={"sqgan": list(PAPER), "jpeg": ["10", "50"]},
                               codec_params={"sqgan": {"checkpoint": str(ckpt), "model": "tiny", "device": "cpu"}})
            ids.append(execute(config, store, progress=False))
    return store_path, ids


def test_rows_keep_real_bpp_and_paper_rate(runs):
    store_path, (run_a, _b) = runs
    with Store(store_path) as store:
        rows = list(store.rows(run_a))
        df = summarise(store, run_a)
    sq = [r for r in rows if r.codec == "sqgan"]
    assert len(sq) == 2 and all(r.status == "ok" for r in rows)
    for r in sq:
        assert r.bpp == 8 * sum(r.bytes.values()) / (256 * 512)  # the real bytes, always
        assert paper_values(r.metrics) == {"bpp_paper": PAPER[r.rate], "bpp_paper_image": IMAGE_TERM[r.rate],
                                           "bpp_paper_semantic": pytest.approx(PAPER[r.rate] - IMAGE_TERM[r.rate])}
        assert r.bpp != r.metrics["bpp_paper"]
    # summary: bpp (real) and bpp_paper side by side, byte parts visible, paper terms in the CSV
    assert {"bpp", "bpp_paper", "bpp_header", "bpp_image", "bpp_semantic", "bpp_paper_image",
            "bpp_paper_semantic"} <= set(df.columns)
    for rate, paper in PAPER.items():
        s = df[(df.codec == "sqgan") & (df.rate == rate)].iloc[0]
        assert s.bpp_paper == paper and s.bpp == pytest.approx(np.mean([r.bpp for r in sq if r.rate == rate]))
        assert s.bpp_header + s.bpp_image + s.bpp_semantic == pytest.approx(s.bpp, rel=1e-12)
    assert df[df.codec == "jpeg"].bpp_paper.isna().all()
    header = to_markdown(df).splitlines()[0]
    assert "bpp (paper formula)" in header and "bpp (semantic)" in header and "bpp (paper: image)" not in header
    assert "paper's formula rate of sqgan" in to_markdown(df)


def test_paper_view_uses_the_formula_and_says_so(runs, tmp_path):
    store_path, (run_a, _b) = runs
    with Store(store_path) as store:
        df = summarise(store, run_a)
        view = rate_view(df, "paper")
        write_report(store, run_a, tmp_path / "rep", rate="paper")
    sq, jp = view[view.codec == "sqgan"], view[view.codec == "jpeg"]
    assert sorted(sq.bpp) == sorted(PAPER.values()) and set(sq.rate_basis) == {"paper formula"}
    assert list(jp.bpp) == list(jp.bpp_real) and set(jp.rate_basis) == {"real bytes"}
    real = df.set_index(["codec", "rate"]).bpp
    assert all(view.set_index(["codec", "rate"]).bpp_real == real.reindex(view.set_index(["codec", "rate"]).index))
    assert view.attrs["real_rate_codecs"] == ["jpeg"] and "bpp_paper" not in view
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "bpp (paper rate)" in md and "bpp (real)" in md and "rate basis" in md
    assert "codecs without a paper formula use their real bpp: jpeg" in md
    csv = pd.read_csv(tmp_path / "rep" / "summary.csv", dtype={"rate": str})
    assert csv.loc[(csv.codec == "sqgan") & (csv.rate == "1:1"), "bpp"].item() == PAPER["1:1"]
    per_image = pd.read_csv(tmp_path / "rep" / "per_image.csv", dtype={"rate": str})
    assert {"bpp", "bpp_paper"} <= set(per_image.columns)  # both rates, whatever --rate


def test_export_has_both_rates(runs, tmp_path):
    store_path, (run_a, _b) = runs
    with Store(store_path) as store:
        real = read_export(export_run(store, run_a, tmp_path / "real.csv"))
        paper = read_export(export_run(store, run_a, tmp_path / "paper.json", rate="paper"))
    sq = real[real.codec == "sqgan"].set_index("rate")
    assert sq.bpp_paper.to_dict() == PAPER and (sq.bpp != sq.bpp_paper).all()
    assert sq.bytes_semantic.notna().all() and real[real.codec == "jpeg"].bpp_paper.isna().all()
    psq = paper[paper.codec == "sqgan"].set_index("rate")
    assert psq.bpp.to_dict() == PAPER and (psq.bpp_real == sq.bpp.reindex(psq.index)).all()
    assert set(paper.rate_basis) == {"paper formula", "real bytes"}


def test_figure_draws_sqgan_at_paper_rate_by_default(runs, tmp_path):
    store_path, (run_a, _b) = runs
    with Store(store_path) as store:
        paths = write_figure("sqgan-fig12", store, [run_a], tmp_path)
        fig_default = figure("sqgan-fig12", load_runs(store, [run_a], rate="paper"))
        fig_real = figure("sqgan-fig12", load_runs(store, [run_a], rate="real"))
    assert all(p.stat().st_size > 0 for p in paths)

    def psnr_lines(fig):
        ax = next(a for a in fig.axes if a.get_title() == "PSNR")
        return ax, {ln.get_label(): sorted(ln.get_xdata()) for ln in ax.get_lines()}

    ax, lines = psnr_lines(fig_default)
    assert lines["sqgan"] == sorted(PAPER.values()) and "jpeg (real bpp)" in lines
    caption = " ".join(fig_default.caption_lines)  # the caption strip under the panels (issue 22)
    assert "paper formula" in ax.get_xlabel() and "paper's formula rate for sqgan" in caption
    assert "real bpp (transmitted bytes) for jpeg" in caption
    ax, lines = psnr_lines(fig_real)
    assert lines["sqgan"] != sorted(PAPER.values()) and "jpeg" in lines and ax.get_xlabel() == "bpp"


def test_compare_at_paper_rate(runs, tmp_path):
    store_path, (run_a, run_b) = runs
    with Store(store_path) as store:
        paper = compare(store, run_a, run_b, metrics=["psnr"], rate="paper")
        real = compare(store, run_a, run_b, metrics=["psnr"])
    pts = paper.points[paper.points.codec == "sqgan"].set_index("rate")
    assert pts.bpp_a.to_dict() == PAPER and pts.bpp_b.to_dict() == PAPER
    assert set(paper.metrics.set_index("codec").rate_basis.items()) == {("sqgan", "paper formula"),
                                                                        ("jpeg", "real bytes")}
    assert paper.rate == "paper" and any("paper formula" in n for n in paper.notes)
    rpts = real.points[real.points.codec == "sqgan"].set_index("rate")
    assert (rpts.bpp_a != pts.bpp_a.reindex(rpts.index)).all() and set(real.metrics.rate_basis) == {"real bytes"}
    assert not paper.regressed  # run b is run a from the cache
    # the paired intervals (--ci) resample the rate the points use: the paper formula for sqgan
    from bench.analysis.stats import Bootstrap

    with Store(store_path) as store:
        paired = compare(store, run_a, run_b, metrics=["psnr"], rate="paper", ci=Bootstrap(resamples=20)).paired
    bpp = paired[paired.metric == "bpp"].set_index(["codec", "rate_a"])
    assert {r: bpp.loc[("sqgan", r), "value_a"] for r in PAPER} == pytest.approx(PAPER, rel=1e-12)
    jpeg = paper.points[paper.points.codec == "jpeg"].set_index("rate")
    assert {r: bpp.loc[("jpeg", r), "value_a"] for r in jpeg.index} == pytest.approx(jpeg.bpp_a.to_dict(), rel=1e-12)


def test_cli_rate_flags(runs, tmp_path, capsys):
    store_path, (run_a, run_b) = runs
    out = ["--out", str(store_path.parent)]
    assert main([*out, "report", run_a, "--rate", "paper", "--dest", str(tmp_path / "r")]) == 0
    assert "paper rate" in capsys.readouterr().out
    assert main([*out, "compare", run_a, run_b, "--metric", "psnr", "--rate", "paper",
                 "--csv", str(tmp_path / "c")]) == 0
    text = capsys.readouterr().out
    assert "rate: paper formula" in text
    bd = pd.read_csv(tmp_path / "c" / "compare_points.csv", dtype={"rate": str})
    assert bd.loc[bd.codec == "sqgan", "bpp_a"].tolist() == sorted(PAPER.values())
    assert main([*out, "export", run_a, "--rate", "paper", "-o", str(tmp_path / "x.csv")]) == 0
    assert "rate_basis" in pd.read_csv(tmp_path / "x.csv").columns
    assert main([*out, "figures", run_a, "--preset", "sqgan-fig12", "--rate", "real",
                 "--dest", str(tmp_path / "f")]) == 0
    assert (tmp_path / "f" / "sqgan-fig12.pdf").is_file()
    assert main([*out, "report", run_a, "--html", "--rate", "paper", "--no-crops", "--dest", str(tmp_path / "h")]) == 0
    page = (tmp_path / "h" / "report.html").read_text()
    table = page.split("<h3>Summary</h3>", 1)[1].split("<h3>", 1)[0]
    assert "paper formula rate" in table and f"{PAPER['1:1']:.4f}" in table  # the formula's bpp, by hand


def test_legacy_bound_notes_count_as_paper_rate(tmp_path):
    """Rows written by SQ-GAN adapters version 1 (bpp_bound*) show the paper rate too."""
    with Store(tmp_path / "s.sqlite") as store:
        store.begin_run("old", {}, {"metrics": {}})
        store.put("old", Row("sqgan", "0.4:0.6", "x", height=256, width=512, bytes={"image": 300}, bpp=300 * 8 / 131072,
                             metrics={"bpp_bound": 0.04, "bpp_bound_image": 0.02, "bpp_bound_semantic": 0.02}))
        df = summarise(store, "old")
    assert df.bpp_paper.item() == 0.04 and df.bpp_paper_image.item() == 0.02
    assert "bpp_bound" not in df.columns and not math.isnan(df.bpp.item())
