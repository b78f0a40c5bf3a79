"""A codec's self-declared label (e.g. a BPG stand-in) reaches every table and figure."""

from __future__ import annotations

import fakes_bench

from bench.execution.runner import RunConfig, execute
from bench.report import render_console, summarise, write_report
from bench.report.html import HtmlOptions, render_html
from bench.storage.store import Store


def test_stand_in_label_is_shown(tmp_path, monkeypatch):
    monkeypatch.setattr(fakes_bench.QuantCodec, "describe",
                        lambda self: {"name": "quant", "version": "1", "label": "QUANT (BPG stand-in: zlib)"})
    fakes_bench.use_fakes(tmp_path, monkeypatch, 1)
    with Store(tmp_path / "s.sqlite") as store:
        run_id = execute(RunConfig("pngs", ["quant"], ["psnr"], workers=1), store, progress=False)
        df = summarise(store, run_id)
        paths = write_report(store, run_id, tmp_path / "report")
        console = render_console(df)
        page = render_html(store, [run_id], HtmlOptions(crops=False))
    assert set(df["codec"]) == {"quant"}  # keys stay the codec name (compare, figures)
    assert "QUANT (BPG stand-in: zlib)" in console
    md = next(p for p in paths if p.suffix == ".md").read_text()
    tex = next(p for p in paths if p.suffix == ".tex").read_text()
    assert "QUANT (BPG stand-in: zlib)" in md and "stand-in" in tex
    assert "<td class=key>QUANT (BPG stand-in: zlib)</td>" in page  # the HTML table row, not just the settings
