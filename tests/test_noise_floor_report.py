"""The segmenter's noise floor (``miou_orig_floor``) in summaries, tables, curves and the
HTML report: beside mIoU vs original, without a direction, drawn as a line, not a curve."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.registry.catalog import make_metric
from bench.report.curves import curve_columns, rd_figure, write_curves
from bench.report.html import HtmlOptions, render_html
from bench.report.latex import to_latex
from bench.report.summary import summarise
from bench.report.tables import to_markdown
from bench.storage.store import Row, Store

ORIG, FLOOR = "miou_orig (random weights)", "miou_orig_floor (random weights)"


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    """Two codecs × one rate point × 2 images; hand-set orig and floor sums (19 classes)."""
    metric = make_metric("miou", allow_random_weights=True)
    store = Store(tmp_path / "m.sqlite")
    store.begin_run("seg", {}, {"metrics": {"miou": {"name": "miou", "random_weights": True}}})
    for codec, bpp, hit in (("jpeg", 1.0, 5), ("webp", 2.0, 8)):
        for i in range(2):
            state = metric.init()
            state["union_orig"][:2] = 10
            state["inter_orig"][:2] = hit  # IoU hit/10 for classes 0 and 1
            state["images_orig"] += 1
            state["union_floor"][:2] = 10
            state["inter_floor"][:2] = (9, 7)  # floor (0.9 + 0.7) / 2 = 0.8 on every row
            state["images_floor"] += 1
            store.put("seg", Row(codec, "q", f"i{i}", height=8, width=8, bytes={"image": 8}, bpp=bpp,
                                 metrics={}, states={"miou": state}))
    return store


def test_summary_has_the_floor_beside_miou_orig(store: Store) -> None:
    df = summarise(store, "seg")
    cols = list(df.columns)
    assert cols.index(FLOOR) == cols.index(ORIG) + 1
    assert df[FLOOR].tolist() == pytest.approx([0.8, 0.8])
    assert df[ORIG].tolist() == pytest.approx([0.5, 0.8])
    md = to_markdown(df)
    head = md.splitlines()[0]
    assert "mIoU vs original: segmenter floor (random weights) |" in head  # no ↑/↓ on a reference value
    assert "±1 LSB" in md and "0.8000" in md
    assert "segmenter floor" in to_latex(df)


def test_curves_draw_the_floor_as_a_line_not_a_curve(store: Store, tmp_path: Path) -> None:
    df = summarise(store, "seg")
    assert ORIG in curve_columns(df) and FLOOR not in curve_columns(df)
    fig = rd_figure(df, ORIG)
    ax = fig.axes[0]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_ydata()[0] == pytest.approx(0.8)
    assert any("segmenter floor" in t.get_text() for t in fig.legends[0].get_texts())  # legend below the axes
    names = [p.name for p in write_curves(df, tmp_path / "c")]
    assert not any("floor" in n for n in names)


def test_html_report_shows_the_floor(store: Store) -> None:
    page = render_html(store, ["seg"], HtmlOptions(crops=False, worst=0))
    assert "mIoU vs original: segmenter floor (random weights)</th>" in page
    assert 'class="floor">mIoU vs original: segmenter floor (random weights) = 0.8000' in page
