"""Reports from the run store, checked against values computed independently here
(numpy, scikit-image, pytorch-msssim) from a tiny fake codec on synthetic 200×200 images."""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pytorch_msssim import ms_ssim
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio

from bench.codecs.base import Codec, Encoded, RateKnob, Semantics
from bench.datasets.base import Dataset, Sample
from bench.errors import CodecError, StoreError
from bench.execution.runner import evaluate_one
from bench.metrics.pixel import MSSSIM, PSNR
from bench.report import (
    codec_colour,
    column_info,
    failures,
    per_image,
    rd_figure,
    render_console,
    summarise,
    to_markdown,
    write_curves,
    write_report,
    write_tables,
)
from bench.storage.store import Row, Store

SIZE = 200
IDS = ["img0", "img1", "img2"]
RATES = [64, 4, 16]  # deliberately not in bpp order: "16" < "4" < "64" as text
FLAKY_RATES = [64, 4]


class Quantiser(Codec):
    """Uniform quantisation to ``levels`` grey levels per channel, zlib-packed.

    Parts: "header" (H, W, levels as 3 uint32) and "image" (zlib of the level indices).
    """

    name = "quant"
    rate_knob = RateKnob("levels", tuple(RATES), higher_is_better=True, minimum=2, maximum=256)
    fail_on: tuple[str, int] | None = None

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        if self.fail_on is not None and self.fail_on == (_image_id(image), rate):
            raise CodecError("deliberate failure", "none: this is a test")
        q = np.rint(image.astype(np.float64) / 255.0 * (rate - 1)).astype(np.uint8)
        header = struct.pack("<III", image.shape[0], image.shape[1], rate)
        return Encoded({"header": header, "image": zlib.compress(q.tobytes(), 9)})

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        h, w, levels = struct.unpack("<III", parts["header"])
        q = np.frombuffer(zlib.decompress(parts["image"]), np.uint8).reshape(h, w, 3)
        return np.rint(q.astype(np.float64) * 255.0 / (levels - 1)).astype(np.uint8)


class FlakyQuantiser(Quantiser):
    name = "flaky"
    fail_on = ("img1", 4)


def _image(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = np.stack([x, y, (x + y) / 2], axis=-1) * 200 + 20 * i
    img = base + rng.normal(0, 6, base.shape)
    img[0, 0] = [i, 0, 0]  # tag pixel: lets the fake codec know which image it sees
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _nchw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float()


def _image_id(image: np.ndarray) -> str:
    return f"img{int(image[0, 0, 0])}"


class TinyDataset(Dataset):
    name = "tiny"

    def ids(self) -> list[str]:
        return list(IDS)

    def load(self, image_id: str) -> Sample:
        return Sample(image_id, _image(int(image_id[3:])))

    def files(self, image_id: str) -> list[Path]:
        return []


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """MS-SSIM on 200×200 costs ~10× less CPU with one torch thread on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def evaluated() -> dict[str, Any]:
    """Rows made by the real runner and metrics, and reference values computed here.

    MS-SSIM references are the rows' own per-image values (the summary must average
    them); the per-image value itself is checked once against pytorch-msssim below.
    """
    dataset, metrics = TinyDataset(), [PSNR(), MSSSIM()]
    rows, ref = [], {}
    for codec, rates in ((Quantiser(), RATES), (FlakyQuantiser(), FLAKY_RATES)):
        for rate in rates:
            for image_id in IDS:
                sample = dataset.load(image_id)
                row = evaluate_one(codec, rate, sample, dataset, metrics)
                rows.append(row)
                if codec.fail_on == (image_id, rate):
                    continue
                enc = codec.encode(sample.image, rate)
                rec = codec.decode(enc.parts)
                ref.setdefault((codec.name, str(rate)), []).append({
                    "bpp": 8 * sum(len(p) for p in enc.parts.values()) / SIZE**2,
                    "bpp_image": 8 * len(enc.parts["image"]) / SIZE**2,
                    "bpp_header": 8 * len(enc.parts["header"]) / SIZE**2,
                    "psnr": peak_signal_noise_ratio(sample.image, rec, data_range=255),
                    "mse": mean_squared_error(sample.image, rec),
                    "msssim": row.metrics["msssim"],
                    "recon": rec if (codec.name, image_id, rate) == ("quant", "img0", 16) else None,
                })
    describe = {"psnr": PSNR().describe(), "msssim": MSSSIM().describe()}
    return {"rows": rows, "ref": ref, "describe": describe}


def _store(path: Path, evaluated: dict[str, Any], run_id: str = "tiny-run",
           random: tuple[str, ...] = ()) -> Store:
    meta = {"metrics": {n: dict(d, **({"random_weights": True} if n in random else {}))
                        for n, d in evaluated["describe"].items()}}
    store = Store(path)
    store.begin_run(run_id, {"dataset": "tiny"}, meta)
    for row in evaluated["rows"]:
        store.put(run_id, row)
    # an image that could not be loaded at all: no bytes, no states
    store.put(run_id, Row("quant", "16", "img9", status="error", error="cannot load image: OSError"))
    store.finish_run(run_id)
    return store


def test_summary_matches_independent_values(tmp_path: Path, evaluated: dict[str, Any]) -> None:
    with _store(tmp_path / "s.sqlite", evaluated) as store:
        df = summarise(store, "tiny")  # unique prefix of the run id
    assert len(df) == 5
    # the stored per-image MS-SSIM is pytorch-msssim's value (float32 reference)
    first = evaluated["ref"][("quant", "16")][0]
    reference = ms_ssim(_nchw(_image(0)), _nchw(first["recon"]), data_range=255)
    assert first["msssim"] == pytest.approx(float(reference), abs=2e-5)
    for (codec, rate), refs in evaluated["ref"].items():
        row = df[(df.codec == codec) & (df.rate == rate)].iloc[0]

        def mean(k: str, refs: list[dict[str, Any]] = refs) -> float:
            return float(np.mean([r[k] for r in refs]))

        assert row.n_ok == len(refs)
        assert row.bpp == pytest.approx(mean("bpp"), rel=1e-12)
        assert row.bpp_image == pytest.approx(mean("bpp_image"), rel=1e-12)
        assert row.bpp_header == pytest.approx(mean("bpp_header"), rel=1e-12)
        assert row.bpp_image + row.bpp_header == pytest.approx(row.bpp, rel=1e-12)
        assert row.psnr == pytest.approx(mean("psnr"), rel=1e-9)
        assert row.psnr_of_mean_mse == pytest.approx(10 * math.log10(255**2 / mean("mse")), rel=1e-9)
        assert row.mse == pytest.approx(mean("mse"), rel=1e-9)  # per-image mean, not from compute()
        assert row.msssim == pytest.approx(mean("msssim"), abs=2e-5)
        # dataset MS-SSIM in dB is the dB of the mean MS-SSIM; the per-image mean of dB is its own column
        assert row.msssim_db == pytest.approx(-10 * math.log10(1 - mean("msssim")), rel=1e-9)
        assert row.msssim_db_mean == pytest.approx(np.mean([-10 * math.log10(1 - r["msssim"]) for r in refs]),
                                                   rel=1e-9)
        assert row.n_identical == 0 and row.n_psnr == row.n_msssim == len(refs)
    assert not np.allclose(df.msssim_db, df.msssim_db_mean, rtol=0, atol=1e-5)  # a test that can fail
    # the mean of PSNRs and the PSNR of the mean MSE are different numbers here
    assert not np.allclose(df.psnr, df.psnr_of_mean_mse)


def test_failed_rows_counted_and_excluded(tmp_path: Path, evaluated: dict[str, Any]) -> None:
    with _store(tmp_path / "s.sqlite", evaluated) as store:
        df = summarise(store, "tiny-run")
        bad = failures(store, "tiny-run")
        tidy = per_image(store, "tiny-run")
    flaky4 = df[(df.codec == "flaky") & (df.rate == "4")].iloc[0]
    assert (flaky4.n_ok, flaky4.n_failed) == (2, 1)
    ok_refs = evaluated["ref"][("flaky", "4")]
    assert len(ok_refs) == 2 and flaky4.bpp == pytest.approx(np.mean([r["bpp"] for r in ok_refs]), rel=1e-12)
    quant16 = df[(df.codec == "quant") & (df.rate == "16")].iloc[0]
    assert (quant16.n_ok, quant16.n_failed) == (3, 1)
    assert quant16.psnr == pytest.approx(np.mean([r["psnr"] for r in evaluated["ref"][("quant", "16")]]), rel=1e-9)
    assert int(df.n_failed.sum()) == 2
    assert sorted(zip(bad.codec, bad.rate, bad.image_id)) == [("flaky", "4", "img1"), ("quant", "16", "img9")]
    assert bad.error.str.contains("deliberate failure").any()
    assert len(tidy) == 5 * 3 + 1 and set(tidy.status) == {"ok", "error"}


def test_sorted_by_bpp_within_codec(tmp_path: Path, evaluated: dict[str, Any]) -> None:
    with _store(tmp_path / "s.sqlite", evaluated) as store:
        df = summarise(store, "tiny-run")
    assert list(df.codec) == ["flaky"] * 2 + ["quant"] * 3
    assert list(df.rate) == ["4", "64", "4", "16", "64"]
    for _codec, group in df.groupby("codec"):
        assert group.bpp.is_monotonic_increasing


def test_report_files_and_csv_round_trip(tmp_path: Path, evaluated: dict[str, Any]) -> None:
    out = tmp_path / "report"
    with _store(tmp_path / "s.sqlite", evaluated) as store:
        reads = []
        rows = store.rows
        store.rows = lambda run_id, **kw: reads.append(run_id) or rows(run_id, **kw)  # type: ignore[method-assign]
        paths = write_report(store, "tiny-run", out)
        assert reads == ["tiny-run"]  # summary, per-image table and failures from one read
        del store.rows
        df = summarise(store, "tiny-run")
    names = {p.name for p in paths}
    assert {"summary.md", "summary.csv", "summary.tex", "per_image.csv", "failures.csv",
            "rd_psnr.png", "rd_psnr.pdf", "rd_msssim.png", "rd_msssim.pdf"} <= names
    for p in paths:
        assert p.is_file() and p.stat().st_size > 0, p
    assert (out / "rd_psnr.pdf").read_bytes().startswith(b"%PDF")
    with Image.open(out / "rd_psnr.png") as im:
        assert min(im.info["dpi"]) >= 150
    back = pd.read_csv(out / "summary.csv", dtype={"rate": str})
    assert list(back.columns) == list(df.columns)
    numeric = df.select_dtypes("number").columns
    np.testing.assert_allclose(back[numeric].to_numpy(float), df[numeric].to_numpy(float), rtol=1e-14)
    assert list(back.codec) == list(df.codec) and list(back.rate) == list(df.rate)

    tex = (out / "summary.tex").read_text()
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert "PSNR [dB] $\\uparrow$" in tex and "\\\\" in tex
    md = (out / "summary.md").read_text()
    assert "PSNR [dB] ↑" in md and "bpp" in md
    first = df.iloc[0]
    assert f"{first.bpp:.4f}" in md and f"{first.psnr:.2f}" in md and f"{first.msssim:.4f}" in md
    assert f"{first.bpp:.5f}" not in md  # rounded, not raw floats
    assert "random weights" not in md


def test_random_weights_metric_is_marked_everywhere(tmp_path: Path, evaluated: dict[str, Any]) -> None:
    with _store(tmp_path / "s.sqlite", evaluated, random=("msssim",)) as store:
        df = summarise(store, "tiny-run")
        tidy = per_image(store, "tiny-run")
    assert "msssim (random weights)" in df.columns and "msssim" not in df.columns
    assert "msssim_db (random weights)" in df.columns
    assert "psnr" in df.columns  # real metrics stay unmarked
    assert "msssim (random weights)" in tidy.columns and "msssim" not in tidy.columns

    md = to_markdown(df)
    header = md.splitlines()[0]
    assert "MS-SSIM (random weights) ↑" in header and "MS-SSIM (random weights) [dB] ↑" in header
    assert "| MS-SSIM |" not in header.replace("  ", " ")
    assert "PSNR [dB] ↑" in header and "PSNR (random" not in header
    assert "random weights" in render_console(df)

    paths = write_tables(df, tmp_path / "t") + write_curves(df, tmp_path / "t", metrics=["msssim"])
    assert "random weights" in (tmp_path / "t" / "summary.tex").read_text()
    assert any(p.name == "rd_msssim_random-weights.png" for p in paths)
    fig = rd_figure(df, "msssim (random weights)")
    ax = fig.axes[0]
    assert "random weights" in ax.get_title()
    assert not ax.texts and fig.caption_lines[0].startswith("RANDOM WEIGHTS")  # in the caption, not on the data
    # after a CSV round trip (no attrs) the mark is still read from the column name
    back = pd.read_csv(tmp_path / "t" / "summary.csv", dtype={"rate": str})
    assert column_info(back)["msssim (random weights)"].random_weights
    assert not column_info(back)["psnr"].random_weights


def test_curves_colours_direction_and_units(tmp_path: Path, evaluated: dict[str, Any]) -> None:
    with _store(tmp_path / "s.sqlite", evaluated) as store:
        df = summarise(store, "tiny-run")
    figs = [rd_figure(df, c) for c in ("psnr", "msssim")]
    for fig in figs:
        lines = {ln.get_label(): ln for ln in fig.axes[0].lines}
        assert set(lines) == {"quant", "flaky"}
        for codec, ln in lines.items():
            assert tuple(ln.get_color()[:3]) == codec_colour(codec)
            assert len(ln.get_xdata()) == {"quant": 3, "flaky": 2}[codec] and np.all(np.diff(ln.get_xdata()) > 0)
    assert codec_colour("quant") != codec_colour("flaky")
    ax = figs[0].axes[0]
    assert ax.get_xlabel() == "rate [bpp]" and ax.get_ylabel() == "PSNR [dB] (↑ better)"
    assert len(figs[0].legends[0].get_texts()) == 2  # the legend sits below the axes
    mse = rd_figure(df, "mse").axes[0]
    assert "↓ better" in mse.get_ylabel()
    assert render_console(df).splitlines()[0].split()[:2] == ["codec", "rate"]


def test_unknown_run_raises(tmp_path: Path, evaluated: dict[str, Any]) -> None:
    with _store(tmp_path / "s.sqlite", evaluated) as store, pytest.raises(StoreError):
        summarise(store, "nope")


def test_dataset_level_miou_from_summed_counts(tmp_path: Path) -> None:
    """mIoU is computed from intersections and unions summed over images (not a mean of
    per-image mIoU); per-class and count columns stay in the CSV only."""
    from bench.registry.catalog import make_metric

    metric = make_metric("miou", allow_random_weights=True)
    rng = np.random.default_rng(0)
    store = Store(tmp_path / "m.sqlite")
    store.begin_run("seg", {}, {"metrics": {"miou": {"name": "miou", "random_weights": True}}})
    inter_sum, union_sum = 0, 0
    for i in range(3):
        state = metric.init()
        c = state["inter_orig"].shape[0]
        union = rng.integers(0, 50, c) * (np.arange(c) % 4 != 0)  # some classes absent everywhere
        inter = (union * rng.uniform(0, 1, c)).astype(np.int64)
        state["inter_orig"] += inter
        state["union_orig"] += union
        state["images_orig"] += 1
        inter_sum, union_sum = inter_sum + inter, union_sum + union
        store.put("seg", Row("semcodec", "0.1", f"i{i}", height=10, width=10, bytes={"labels": 5, "image": 20},
                             bpp=2.0, metrics={"miou_orig_img": float(np.mean(inter[union > 0] / union[union > 0]))},
                             states={"miou": state}))
    df = summarise(store, "seg")
    present = union_sum > 0
    expected = float(np.mean(inter_sum[present] / union_sum[present]))
    assert df["miou_orig (random weights)"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert df["classes_orig (random weights)"].iloc[0] == present.sum()
    assert expected != pytest.approx(df["miou_orig_img (random weights)"].iloc[0], rel=1e-6)
    md = to_markdown(df)
    head = md.splitlines()[0]
    assert "mIoU vs original (random weights) ↑" in head and "/" not in head and "classes" not in head
    assert "more columns" in md
    paths = write_tables(df, tmp_path / "o") + write_curves(df, tmp_path / "o")
    assert [p.name for p in paths if p.suffix == ".png"] == ["rd_miou_orig_random-weights.png"]
    back = pd.read_csv(tmp_path / "o" / "summary.csv")
    assert any("/" in c for c in back.columns)  # per-class IoU kept in the CSV
    assert all(c.endswith("(random weights)") for c in back.columns if c.startswith(("miou", "iou", "classes")))


def test_broken_state_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.sqlite")
    store.begin_run("bad", {}, {"metrics": {"psnr": {"name": "psnr"}}})
    broken = {"n": np.ones(2), "sum_psnr": np.ones(2), "n_inf": np.zeros(2), "sum_mse": np.ones(2)}
    store.put("bad", Row("c", "1", "i0", height=8, width=8, bytes={"x": 8}, bpp=1.0,
                         metrics={"psnr": 30.0}, states={"psnr": broken}))
    df = summarise(store, "bad")
    # no dataset-level value could be computed: the mean of the per-image values stands in
    assert df.bpp.iloc[0] == 1.0 and df.psnr.iloc[0] == 30.0 and "psnr_of_mean_mse" not in df
    assert column_info(df)["psnr"].kind == "mean"
    assert any("psnr compute failed" in w for w in df.attrs["warnings"])
    assert "psnr compute failed" in to_markdown(df)


def test_frame_attrs_travel_through_pandas_operations_without_deep_copies():
    """pandas deep-copies attrs at every operation; the column metadata is shared instead."""
    import pandas as pd

    from bench.report.attrs import Shared, frame_attrs

    df = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    df.attrs = frame_attrs(run_id="r1", columns={"a": {"unit": "dB"}}, random_metrics=["lpips"])
    out = df[df["a"] > 1].assign(b=lambda d: d["a"] * 2).sort_values("a").copy()
    assert out.attrs["columns"] is df.attrs["columns"] and isinstance(out.attrs["columns"], Shared)
    assert out.attrs["run_id"] == "r1" and out.attrs["random_metrics"] == ["lpips"]
    plain = pd.DataFrame({"a": [1.0]})
    plain.attrs = {"columns": {"a": {"unit": "dB"}}}
    assert plain.copy().attrs["columns"] is not plain.attrs["columns"]  # what pandas does without it
