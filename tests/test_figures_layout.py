"""Figures a reviewer accepts: every preset and per-metric curve, drawn from a run with an
``original`` row, ``*`` (small-N) and ``†`` (fewer images) values, has no overlapping text or
legend boxes and no text over a data marker (matplotlib's renderer extents); titles name the
run's dataset; reference rows are lines; bookkeeping columns are never plotted."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from figure_checks import overlaps

from bench.report.curves import (
    codec_colour,
    codec_marker,
    curve_columns,
    rd_figure,
    write_curves,
)
from bench.report.figstyle import DAGGER_LABEL, RING_LABEL, WIDTHS
from bench.report.figures import PRESETS, RunData, figure

RATES = {"jpeg": ["5", "10", "35", "100"], "webp": ["10", "50", "90"], "bpg": ["40", "30"]}
BPP = {"jpeg": [0.15, 0.26, 0.63, 5.6], "webp": [0.25, 0.5, 1.4], "bpg": [0.1, 0.4]}


def summary(dataset: str = "kodak") -> pd.DataFrame:
    """A summary of 6 images: fid from N = 6 (``*``), lpips of jpeg 35 from 5 images (``†``)."""
    recs = []
    for codec, rates in RATES.items():
        for rate, bpp in zip(rates, BPP[codec]):
            lb = math.log2(bpp * 10)
            recs.append({"codec": codec, "rate": rate, "n_ok": 6, "n_failed": 0, "n_lpips": 5 if rate == "35" else 6,
                         "n_psnr": 6, "bpp": bpp, "fid": 90 - 12 * lb, "fid_n": 6.0, "fid_patch": 0.0,
                         "kid": 0.05 - 0.005 * lb, "kid_n": 6.0, "kid_subsets": 100.0, "lpips": 0.5 - 0.05 * lb,
                         "psnr": 24 + 2 * lb, "miou_orig": 0.5 + 0.05 * lb, "miou_orig_floor": 0.93})
    recs.append({"codec": "original", "rate": "lossless", "n_ok": 6, "n_failed": 0, "n_lpips": 6, "n_psnr": 6,
                 "bpp": 13.7, "fid": 0.0, "fid_n": 6.0, "fid_patch": 0.0, "kid": 0.0, "kid_n": 6.0,
                 "kid_subsets": 100.0, "lpips": 0.0, "psnr": math.inf, "miou_orig": 1.0, "miou_orig_floor": 0.93})
    df = pd.DataFrame(recs)
    df.attrs = {"dataset": dataset, "n_images": 6, "protocol": "card", "run_id": f"{dataset}-run"}
    return df


def run_data(dataset: str = "kodak", content: str = "k") -> RunData:
    run = {"run_id": f"{dataset}-run", "config": {"dataset": dataset},
           "meta": {"dataset": {"name": dataset, "n_images": 6, "content_hash": content},
                    "metrics": {m: {} for m in ("fid", "kid", "lpips", "psnr", "miou")}}}
    return RunData(run, summary(dataset))


def _texts(fig) -> list[str]:
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [ax.get_title(), *(t.get_text() for t in ax.texts)]
    return out


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_has_no_overlaps_and_names_the_runs_dataset(name, width):
    runs = [run_data("kodak")] + ([run_data("coco", "c")] if PRESETS[name].rows_by_dataset else [])
    with pytest.warns(UserWarning):  # runs of protocol "card", not the paper's
        fig = figure(name, runs, width=width)
    assert overlaps(fig) == []
    assert fig.get_figwidth() == pytest.approx(WIDTHS[width])
    texts = " ".join(_texts(fig))
    assert "kodak" in fig.texts[0].get_text() or "kodak" in fig.get_suptitle()
    assert "Cityscapes" not in texts and "COCO" not in texts  # no hard-coded dataset
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "original (clean)" in labels and RING_LABEL in labels
    has_lpips = any("lpips" in panel.keys for panel in PRESETS[name].panels)  # lpips of jpeg 35 carries †
    assert (DAGGER_LABEL in labels) == has_lpips
    assert "jpeg" in labels and "kid_subsets" not in texts
    for ax in fig.axes:  # the reference row is a line, never a point: x axis ends before 13.7 bpp
        if ax.get_visible() and ax.lines:
            assert ax.get_xlim()[1] < 13.7
            for line in ax.get_lines():
                if line.get_label() in RATES:
                    assert line.get_marker() == codec_marker(line.get_label())
    if name == "spic-fig4":  # no label-map part: the dotted line's absence is said, not silently dropped
        assert any("--ssm-bpp" in c for c in fig.caption_lines)


@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_metric_curve_has_no_overlaps(width):
    df = summary()
    columns = curve_columns(df)
    assert set(columns) == {"fid", "kid", "lpips", "psnr", "miou_orig"}  # no fid_n, kid_subsets, floor, n_*
    for column in columns:
        fig = rd_figure(df, column, width)
        assert overlaps(fig) == [], column
        assert "kodak" in fig.get_suptitle()
        ax = fig.axes[0]
        assert ax.get_xlim()[1] < 13.7, column  # original drawn as a line, not a point at 13.7 bpp
        assert "original" not in {ln.get_label() for ln in ax.get_lines()}
    fid = rd_figure(df, "fid", width)
    labels = [t.get_text() for t in fid.legends[0].get_texts()]
    assert RING_LABEL in labels and any(lab.startswith("original (clean)") for lab in labels)
    lp = rd_figure(df, "lpips", width)
    daggers = [ln for ln in lp.axes[0].get_lines() if ln.get_label() == "_dagger"]
    assert len(daggers) == 1 and daggers[0].get_xdata().tolist() == [0.63]  # jpeg 35 only
    assert DAGGER_LABEL in [t.get_text() for t in lp.legends[0].get_texts()]
    miou = rd_figure(df, "miou_orig", width).axes[0]
    levels = sorted(ln.get_ydata()[0] for ln in miou.get_lines() if ln.get_linestyle() != "-")
    assert levels == pytest.approx([0.93, 1.0])  # segmenter floor and original: horizontal lines
    psnr = rd_figure(df, "psnr", width)
    assert any("inf" in c for c in psnr.caption_lines)  # a lossless reference cannot be a line


def test_random_weights_warning_is_in_the_caption_not_on_the_data():
    df = summary().rename(columns={"lpips": "lpips (random weights)"})
    fig = rd_figure(df, "lpips (random weights)")
    assert not fig.axes[0].texts
    assert fig.caption_lines[0].startswith("RANDOM WEIGHTS")
    assert overlaps(fig) == []


def test_curve_files_caption_and_type42_fonts(tmp_path):
    paths = write_curves(summary(), tmp_path, ["psnr"])
    pdf = next(p for p in paths if p.suffix == ".pdf").read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType (Type 42) embedded
    caption = (tmp_path / "rd_psnr.caption.txt").read_text()
    assert "kodak" in caption and "PSNR" in caption


def test_a_pdf_embeds_one_font_subset_with_the_warning_and_fi_in_its_texts(tmp_path):
    """The red warning is not bold and "fi" is no ligature: a second Type 42 subset (a bold face,
    a ligature glyph) costs ~0.25 s a file."""
    df = summary().rename(columns={"lpips": "lpips (random weights)"})
    df.loc[df["codec"] == "webp", "codec"] = "fine-webp"
    paths = write_curves(df, tmp_path, ["lpips (random weights)"])
    pdf = next(p for p in paths if p.suffix == ".pdf").read_bytes()
    assert "RANDOM WEIGHTS" in (tmp_path / "rd_lpips_random-weights.caption.txt").read_text()
    fonts = set(re.findall(rb"/BaseFont /([A-Z]{6}\+[\w-]+)", pdf))
    assert len(fonts) == 1 and pdf.count(b"/FontFile2") == 1, fonts


def test_codec_colours_are_distinct_and_colour_blind_safe_for_the_known_codecs():
    from bench.report.curves import KNOWN_CODECS, PALETTE

    assert len({codec_colour(c) for c in KNOWN_CODECS}) == len(KNOWN_CODECS)
    assert len({codec_marker(c) for c in KNOWN_CODECS[:10]}) == 10
    assert codec_colour("original") == (0.0, 0.0, 0.0)
    assert all(np.allclose(codec_colour(c), PALETTE[i]) for i, c in enumerate(KNOWN_CODECS))


def test_titles_count_images_in_words():
    from bench.report.formatting import images_text

    assert [images_text(n) for n in (1, 6, None)] == ["1 image", "6 images", "? images"]
