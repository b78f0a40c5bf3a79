"""Paper figure presets drawn from a fixture store: panels, axes labels, plotted values,
SSM line, vector PDF output, consistent codec colours, and the notebook that calls them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from bench.cli import main
from bench.errors import ProtocolMismatchError
from bench.report import codec_colour
from bench.report.figures import PRESETS, figure, load_runs, ssm_bpp
from bench.report.render import INDEX
from bench.storage.store import Row, Store

ROOT = Path(__file__).resolve().parent.parent
H, W = 64, 128
IMAGES = ("a", "b")
# codec -> (rate labels, bpp of image "a" per rate); image "b" gets 1.1x the bytes
CODECS = {"bpg": (["40", "35", "30"], [0.05, 0.12, 0.3]), "jpeg2000": (["0.05", "0.1", "0.2"], [0.05, 0.1, 0.2]),
          "sqgan": (["0.4:0.4", "1:1"], [0.04, 0.09])}
SSM_BYTES = 40  # lossless label map part of "spic" rows


def _values(codec: str, bpp: float, image: str) -> dict[str, float]:
    off = {"bpg": 0.0, "jpeg2000": -1.0, "sqgan": -3.0, "spic": -2.0}[codec] + (0.5 if image == "b" else 0.0)
    lb = float(np.log2(bpp * 100))
    return {"psnr": 22 + 2.5 * lb + off, "mse": 10.0, "lpips": 0.6 - 0.08 * lb - 0.01 * off,
            "fid": 120 - 15 * lb - off, "miou_gt": 0.3 + 0.08 * lb + 0.01 * off, "msssim": 0.8 + 0.03 * lb,
            "msssim_db": 7 + lb, "iou_gt/road": 0.9, "iou_gt/car": 0.5 + 0.05 * lb}


def _add_run(store: Store, run_id: str, dataset: str, codecs: dict, content: str, tag: str | None = None,
             resolution: str = "64x128") -> dict[tuple[str, str, str], Row]:
    meta = {"dataset": {"name": dataset, "content_hash": content, "n_images": len(IMAGES),
                        "protocol": {"dataset": dataset, "resolution": resolution}},
            "codecs": {c: {"name": c, "version": "1", "params": {}} for c in codecs},
            "metrics": {m: {"name": m, "version": "1"} for m in ("psnr", "msssim", "lpips", "fid", "miou")},
            "tag": tag}
    store.begin_run(run_id, {"dataset": dataset}, meta)
    rows = {}
    for codec, (rates, bpps) in codecs.items():
        for rate, bpp in zip(rates, bpps):
            for image in IMAGES:
                scale = 1.1 if image == "b" else 1.0
                n_image = int(round(bpp * scale * H * W / 8))
                parts = {"image": n_image} | ({"ssm": SSM_BYTES} if codec == "spic" else {})
                total = sum(parts.values())
                row = Row(codec, rate, image, height=H, width=W, bytes=parts, bpp=8 * total / (H * W),
                          metrics=_values(codec, 8 * total / (H * W), image))
                store.put(run_id, row)
                rows[(codec, rate, image)] = row
    store.finish_run(run_id)
    return rows


@pytest.fixture()
def fixture_store(tmp_path):
    path = tmp_path / "bench.sqlite"
    with Store(path) as store:
        rows = _add_run(store, "city-base", "cityscapes", CODECS, "c" * 64)
        rows |= _add_run(store, "city-spic", "cityscapes", {"spic": (["35"], [0.03])}, "c" * 64, tag="ep40")
        _add_run(store, "coco-base", "coco", CODECS, "d" * 64)
        _add_run(store, "city-big", "cityscapes", CODECS, "e" * 64, resolution="512x1024")
    return path, rows


def _axes(fig):
    return [ax for ax in fig.axes if ax.get_title()]


def test_sqgan_fig12_panels_labels_and_values(fixture_store):
    path, rows = fixture_store
    with Store(path) as store:
        fig = figure("sqgan-fig12", load_runs(store, ["city-base"]))
    axes = _axes(fig)
    assert [ax.get_title() for ax in axes] == ["FID", "LPIPS", "PSNR", "mIoU"]
    assert all(ax.get_xlabel() == "bpp" for ax in axes)
    ylabels = [ax.get_ylabel() for ax in axes]
    assert ylabels[0].startswith("FID") and ylabels[0].endswith("↓")
    assert ylabels[1].startswith("LPIPS") and ylabels[1].endswith("↓")
    assert ylabels[2] == "PSNR [dB] ↑" and ylabels[3].startswith("mIoU") and ylabels[3].endswith("↑")
    psnr = axes[2]
    lines = {ln.get_label(): ln for ln in psnr.get_lines() if not ln.get_label().startswith("_")}  # not † marks
    assert set(lines) == {"bpg", "jpeg2000", "sqgan"}
    # plotted points are the per-codec means over images, sorted by bpp
    rates, _ = CODECS["bpg"]
    exp_x = [np.mean([rows[("bpg", r, i)].bpp for i in IMAGES]) for r in rates]
    exp_y = [np.mean([rows[("bpg", r, i)].metrics["psnr"] for i in IMAGES]) for r in rates]
    np.testing.assert_allclose(lines["bpg"].get_xdata(), exp_x)
    np.testing.assert_allclose(lines["bpg"].get_ydata(), exp_y)
    # the same colour for a codec in every panel, from the report's mapping
    for ax in axes:
        for ln in ax.get_lines():
            if not ln.get_label().startswith("_"):
                assert to_rgb(ln.get_color()) == pytest.approx(codec_colour(ln.get_label()))


def test_spic_fig4_draws_the_lossless_ssm_line(fixture_store):
    path, _rows = fixture_store
    with Store(path) as store:
        runs = load_runs(store, ["city-base", "city-spic"])
        fig = figure("spic-fig4", runs)
    axes = _axes(fig)
    assert [ax.get_title() for ax in axes] == ["(a) mIoU", "(b) FID"]
    expected = 8 * SSM_BYTES / (H * W)
    assert ssm_bpp(runs) == pytest.approx(expected)
    vlines = [ln for ln in axes[0].get_lines() if ln.get_linestyle() == ":"]
    assert len(vlines) == 1 and vlines[0].get_xdata()[0] == pytest.approx(expected)
    assert "spic" in {ln.get_label() for ln in axes[1].get_lines()}
    # an explicit --ssm-bpp overrides the value found in the parts
    with Store(path) as store:
        fig = figure("spic-fig4", load_runs(store, ["city-base"]), ssm=0.112)
    line = [ln for ln in _axes(fig)[0].get_lines() if ln.get_linestyle() == ":"][0]
    assert line.get_xdata()[0] == pytest.approx(0.112)


def test_iwai_fig8_one_row_per_dataset(fixture_store):
    path, _rows = fixture_store
    with Store(path) as store:
        fig = figure("iwai-fig8", load_runs(store, ["coco-base", "city-base", "city-spic"]))
    axes = _axes(fig)
    # each panel title names its row's dataset (issue 22: no separate row label over the titles)
    assert [ax.get_title() for ax in axes] == [f"({k}) {d}: {t}" for k, d in (("a", "coco"), ("b", "cityscapes"))
                                               for t in ("LPIPS", "FID", "PSNR", "MS-SSIM")]
    assert axes[3].get_ylabel().startswith("MS-SSIM")
    # the cityscapes row combines both cityscapes runs
    assert {ln.get_label() for ln in axes[6].get_lines()} - {"_dagger"} == {"bpg", "jpeg2000", "sqgan", "spic"}
    with Store(path) as store:  # one dataset: its name is the figure's title, not a "(a) coco:" on every panel
        one = figure("iwai-fig8", load_runs(store, ["coco-base"]))
    assert [ax.get_title() for ax in _axes(one)] == ["LPIPS", "FID", "PSNR", "MS-SSIM"]


def test_runs_of_different_protocols_are_not_drawn_together(fixture_store):
    path, _rows = fixture_store
    with Store(path) as store, pytest.raises(ProtocolMismatchError, match="resolution"):
        figure("sqgan-fig12", load_runs(store, ["city-base", "city-big"]))


def test_cli_writes_vector_pdf_and_png(fixture_store, tmp_path):
    path, _rows = fixture_store
    out = tmp_path / "figs"
    names = ["sqgan-fig12", "spic-fig4"]  # the notebook test below writes all presets
    assert main(["--out", str(path.parent), "figures", "--preset", ",".join(names), "city-base", "city-spic",
                 "--dest", str(out)]) == 0
    for name in names:
        pdf, png = (out / f"{name}.pdf").read_bytes(), (out / f"{name}.png").read_bytes()
        assert pdf.startswith(b"%PDF") and png.startswith(b"\x89PNG")
        assert b"/Subtype /Image" not in pdf  # curves are vector, not raster
        assert b"/FontFile2" in pdf  # TrueType fonts embedded (pdf.fonttype 42)


def test_notebook_is_valid_and_its_cells_regenerate_every_figure(fixture_store, tmp_path, monkeypatch):
    path, _rows = fixture_store
    nb_path = ROOT / "notebooks" / "figures.ipynb"
    nb = json.loads(nb_path.read_text())
    try:
        import nbformat
    except ImportError:
        assert nb["nbformat"] == 4 and all(c["cell_type"] in ("code", "markdown") for c in nb["cells"])
    else:
        nbformat.validate(nbformat.reads(nb_path.read_text(), as_version=4))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "from bench.report import figures" in code
    out = tmp_path / "nbfigs"
    monkeypatch.setenv("BENCH_STORE", str(path))
    monkeypatch.setenv("BENCH_FIGURE_RUNS", "city-base,city-spic")
    monkeypatch.setenv("BENCH_FIGURE_DIR", str(out))
    exec(compile(code, str(nb_path), "exec"), {"__name__": "__notebook__"})
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.{s}" for n in PRESETS
                                                            for s in ("pdf", "png", "caption.txt")] + [INDEX])


def test_notebook_executes_under_nbclient(fixture_store, tmp_path, monkeypatch):
    """What `jupyter nbconvert --execute notebooks/figures.ipynb` does, on a tiny store."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path, _rows = fixture_store
    out = tmp_path / "nbexec"
    monkeypatch.setenv("BENCH_STORE", str(path))
    monkeypatch.setenv("BENCH_FIGURE_RUNS", "city-base,city-spic")
    monkeypatch.setenv("BENCH_FIGURE_DIR", str(out))
    monkeypatch.setenv("BENCH_FIGURE_WIDTH", "double")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(ROOT / "notebooks" / "figures.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert {p.name for p in out.iterdir()} >= {f"{n}.pdf" for n in PRESETS}
    assert any(o.output_type == "display_data" for c in nb.cells for o in c.get("outputs", []))


def test_the_clean_reference_level_prints_rounding_noise_as_zero():
    """The original's FID against itself is 0 up to rounding (−1.4e-14 on the Kodak run): its
    line's label says 0; a real level (KID's −0.002, mIoU 0.9653) keeps its digits."""
    from bench.report.curves import level_text

    assert level_text(-1.421e-14, 1.49) == "0"
    assert level_text(-0.002182, 0.0005) == "-0.002182"
    assert level_text(0.96534, 1.0) == "0.9653"
    assert level_text(3e-12, 1e-3) == "3e-12"  # not noise at that scale


def test_an_infinite_value_in_the_column_does_not_zero_the_reference_level():
    """The noise scale is taken over finite values: one codec's inf (a lossless rate point)
    made every reference level read "0"."""
    import pandas as pd

    from bench.report.curves import rd_figure

    df = pd.DataFrame({"codec": ["original", "jpeg", "jpeg"], "rate": ["lossless", "5", "50"], "n_ok": [2, 2, 2],
                       "bpp": [12.0, 0.2, 1.0], "msssim": [0.9653, 0.5, np.inf]})
    labels = [line.get_label() for line in rd_figure(df, "msssim").axes[0].get_lines()]
    assert "original (clean): 0.9653" in labels
