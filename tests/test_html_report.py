"""`bench report --html`: a self-contained page checked in headless Chromium (loads, every
embedded image decodes, curves and tables are in the DOM), per-class IoU bars and
recomputed reconstructions."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import fakes_bench
import numpy as np
import pytest
from PIL import Image

from bench.cli import main
from bench.execution.runner import RunConfig, execute
from bench.metrics import BUILTIN
from bench.metrics.base import Metric, Pair, State
from bench.report.html import HtmlOptions, render_html
from bench.storage.store import Store

CLASSES = ("dark", "bright")


class ToyIoU(Metric):
    """Two 'classes' by luminance (< 128 dark, else bright) of the original (the reference)
    and of the reconstruction (the prediction); per-class IoU summed over images."""

    name = "toyiou"

    def init(self) -> State:
        return {"inter": np.zeros(2, np.int64), "union": np.zeros(2, np.int64)}

    @staticmethod
    def _labels(image: np.ndarray) -> np.ndarray:
        return (image.astype(np.float64).mean(axis=2) >= 128).astype(np.int64)

    def update(self, state: State, pair: Pair) -> dict[str, float]:
        ref, pred = self._labels(pair.sample.image), self._labels(pair.reconstruction)
        for c in range(2):
            state["inter"][c] += np.sum((ref == c) & (pred == c))
            state["union"][c] += np.sum((ref == c) | (pred == c))
        return {}

    def compute(self, state: State) -> dict[str, float]:
        iou = state["inter"] / np.maximum(state["union"], 1)
        return {"miou_gt": float(iou.mean()), **{f"iou_gt/{n}": float(v) for n, v in zip(CLASSES, iou)}}


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    exe = _browser()
    if exe is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           *extra, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str]] = []
        self.tables: list[dict[str, list]] = []
        self.body: dict[str, str] = {}
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.imgs.append(a)
        elif tag == "body":
            self.body = a
        elif tag == "table":
            self.tables.append({"class": a.get("class", ""), "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1]["rows"][-1].append("".join(self._cell).strip())
            self._cell = None


@pytest.fixture()
def run(tmp_path, monkeypatch):
    monkeypatch.setitem(BUILTIN, "toyiou", ("test_html_report:ToyIoU", "toy per-class IoU"))
    data = fakes_bench.use_fakes(tmp_path, monkeypatch, 2)
    with Store(tmp_path / "bench.sqlite") as store:
        run_id = execute(RunConfig(dataset="pngs", codecs=["quant"], metrics=["psnr", "toyiou"], workers=1), store,
                         progress=False)
    return tmp_path, run_id, data


def test_html_report_loads_in_headless_chromium(run, tmp_path):
    out, run_id, _data = run
    assert main(["--out", str(out), "report", "--html", run_id, "--bpp", "9.0"]) == 0
    page = out / run_id / "report.html"
    text = page.read_text(encoding="utf-8")
    # self-contained: every image is a data: URI and nothing is fetched from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", text)
    raw = _Dom()
    raw.feed(text)
    assert raw.imgs and all(re.match(r"data:image/(png|webp);base64,", i["src"]) for i in raw.imgs)

    result = _chromium(page, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = _Dom()
    dom.feed(result.stdout)
    # the page's load handler counted the images the browser actually decoded
    assert dom.body["data-images"] == str(len(raw.imgs)) == dom.body["data-images-loaded"]
    alts = [i["alt"] for i in dom.imgs]
    assert "psnr vs bpp" in alts and "miou_gt vs bpp" in alts  # rate curves
    assert "original" in alts and "quant" in alts  # side-by-side crops (WebP thumbnails)
    assert 'aria-label="per-class IoU vs gt: rate point"' in text  # IoU of every rate point, from iou_gt/<class>
    summary = [t for t in dom.tables if t["class"] == "summary"]
    assert len(summary) == 1
    head, *body = summary[0]["rows"]
    assert "PSNR [dB] ↑" in head and head[:2] == ["codec", "rate"]
    assert sorted(r[1] for r in body) == ["16", "32", "4"]
    # the embedded curve is a real PNG
    curve = next(i for i in dom.imgs if i["alt"] == "psnr vs bpp")
    with Image.open(io.BytesIO(base64.b64decode(curve["src"].split(",", 1)[1]))) as im:
        assert im.format == "PNG" and im.width > 300
    # crops were recomputed with the same bytes as the stored row
    assert "≠ stored" not in text and "rate 16: " in text  # 9.0 bpp is nearest to step 16

    shot = tmp_path / "shot.png"
    result = _chromium(page, tmp_path / "profile2", "--hide-scrollbars", "--window-size=1200,1600",
                       f"--screenshot={shot}")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (1600, 1200) and pixels.std() > 10  # not a blank page


def test_iou_bars_show_the_per_class_values(run):
    out, run_id, _data = run
    with Store(out / "bench.sqlite") as store:
        text = render_html(store, [run_id], HtmlOptions(crops=False))
    assert 'aria-label="per-class IoU vs gt: rate point"' in text and "Reconstructions" not in text
    # one view per rate point: the selected one as HTML, all of them in the JSON block
    data = re.search(r'<script type="application/json" id="d0-iou-gt-data">(.*?)</script>', text).group(1)
    views = __import__("json").loads(data)["views"]
    assert len(views) == 3 and all(len(v["values"]) == len(CLASSES) for v in views)


def test_crops_are_skipped_with_a_reason_when_the_image_is_gone(run):
    out, run_id, data = run
    shutil.rmtree(data)
    with Store(out / "bench.sqlite") as store:
        text = render_html(store, [run_id])
    assert "crops skipped: cannot load image" in text
    assert 'class="summary"' in text  # the rest of the page is still there


def test_html_of_a_26_point_run_is_small_with_contents_and_no_bookkeeping(tmp_path, monkeypatch):
    """26 rate points (steps 1…100, which sort differently as text) with PSNR, per-class IoU
    and a feature-state FID: the page stays under 3 MB, has a table of contents, every
    section collapsed, rates in numeric order, and no count shown as '6.0000'."""
    monkeypatch.setitem(BUILTIN, "toyiou", ("test_html_report:ToyIoU", "toy per-class IoU"))
    monkeypatch.setitem(BUILTIN, "pixfid", ("test_dataset_values:PixelFID", "pixel FID"))
    fakes_bench.use_fakes(tmp_path, monkeypatch, 2)
    steps = [str(s) for s in (1, 2, 3, 5, 10, 35, 100, *range(4, 80, 4))][:26]
    assert len(set(steps)) == 26
    with Store(tmp_path / "bench.sqlite") as store:
        run_id = execute(RunConfig(dataset="pngs", codecs=["quant"], rates={"quant": steps},
                                   metrics=["psnr", "toyiou", "pixfid"], workers=1), store, progress=False)
    assert main(["--out", str(tmp_path), "report", "--html", run_id]) == 0
    page = tmp_path / run_id / "report.html"
    size = page.stat().st_size
    assert size < 3_000_000, size
    text = page.read_text(encoding="utf-8")
    assert '<nav class=toc aria-label="contents"><h2>Contents</h2>' in text
    for section in ("summary", "curves", "iou", "crops", "worst"):
        assert f'<a href="#d0-{section}">' in text and f'<details class=section id="d0-{section}">' in text
    assert "<details class=section open" not in text  # collapsed by default
    dom = _Dom()
    dom.feed(text)
    summary = next(t for t in dom.tables if t["class"] == "summary")
    head, *body = summary["rows"]
    assert not any(h.startswith(("fid_n", "fid_patch", "fid_low_n", "kid_subsets", "n_pixfid")) for h in head)
    assert len(body) == 26
    # rate points numerically ordered in the worst-images table (bpp falls as the step grows)
    worst = next(t for t in dom.tables if t["class"] == "worst")
    rates = [r[0] for r in worst["rows"][1:]]
    assert len(rates) >= 20 and rates == sorted(rates, key=float) and rates != sorted(rates)
    data = re.search(r'<script type="application/json" id="d0-iou-gt-data">(.*?)</script>', text).group(1)
    assert len(__import__("json").loads(data)["views"]) == 26  # per-class IoU at every rate point


def test_html_curves_are_titled_with_the_runs_dataset_and_protocol(tmp_path):
    """The page's curve frames carry the run's context, as `bench report`'s do ("dataset ?" was a defect)."""
    from bench import evaluate
    from bench.report.curves import figure_title
    from bench.report.html import _groups

    store_path = tmp_path / "bench.sqlite"
    run_id = str(evaluate(["jpeg"], "demo", metrics=["psnr"], limit=1, rates=[50], store=store_path)["run_id"].iloc[0])
    with Store(store_path, readonly=True) as store:
        (group,) = _groups(store, [run_id])
    assert figure_title(group.summary) == "demo, 1 image, protocol card"


def test_a_second_page_recomputes_and_redraws_nothing_and_is_the_same(run, monkeypatch):
    """`bench report --html` keeps its crops and curves by content beside the page: written
    again from unchanged runs it codes no image and draws no curve, and the page is identical
    (but for its time stamp); a changed crop side is recomputed."""
    import bench.report.recompute as recompute
    import bench.report.render as render

    out, run_id, _data = run
    monkeypatch.setattr(render, "free_cores", lambda: 1)  # drawn here, where the calls are counted
    calls = {"recompute": 0, "draw": 0}
    real_recompute, real_draw = recompute._recompute, render._draw

    def counted_recompute(*args, **kwargs):
        calls["recompute"] += 1
        return real_recompute(*args, **kwargs)

    def counted_draw(job):
        calls["draw"] += 1
        return real_draw(job)

    monkeypatch.setattr(recompute, "_recompute", counted_recompute)
    monkeypatch.setattr(render, "_draw", counted_draw)
    page = out / run_id / "report.html"

    def html(*extra: str) -> str:
        assert main(["--out", str(out), "report", "--html", run_id, "--bpp", "9.0", *extra]) == 0
        return re.sub(r"generated [0-9: -]+;", "", page.read_text(encoding="utf-8"))

    first = html()
    assert calls["recompute"] >= 1 and calls["draw"] >= 2  # psnr and miou_gt curves at least
    assert (out / run_id / ".report-cache" / "d0" / "crops").is_dir()
    before = dict(calls)
    assert html() == first and calls == before
    html("--crop", "64")
    assert calls["recompute"] > before["recompute"] and calls["draw"] == before["draw"]


def test_the_clean_reference_has_no_worst_images_and_is_not_recoded(tmp_path, monkeypatch):
    """`original` is every metric's ceiling: no "worst images" table of its own, and its crop is
    the original (its lossless bpp in the caption), not a PNG re-encoding."""
    import bench.report.recompute as recompute

    fakes_bench.use_fakes(tmp_path, monkeypatch, 2)
    with Store(tmp_path / "bench.sqlite") as store:
        run_id = execute(RunConfig(dataset="pngs", codecs=["quant", "original"], metrics=["psnr"], workers=1),
                         store, progress=False)
        coded: list[str] = []
        real = recompute._recompute
        monkeypatch.setattr(recompute, "_recompute", lambda run, codec, *a: coded.append(codec) or real(run, codec, *a))
        text = render_html(store, [run_id])
    assert coded and set(coded) == {"quant"}
    assert "<h4>quant</h4>" in text and "<h4>original</h4>" not in text
    assert re.search(r"<figcaption>original \S+ \(\d+×\d+\), lossless \d+\.\d{4} bpp</figcaption>", text)


def test_a_codec_whose_tool_is_gone_says_so_under_its_crop(run, monkeypatch):
    """A codec whose binary left PATH describes itself differently; the crop names the missing
    tool, not "settings differ"."""
    from bench.codecs.base import Requirement

    out, run_id, _data = run
    monkeypatch.setattr(fakes_bench.QuantCodec, "requirements",
                        lambda self: [Requirement("binary", "quantenc", False, "put quantenc on PATH")], raising=False)
    with Store(out / "bench.sqlite") as store:
        text = render_html(store, [run_id])
    assert "quant is not available here: needs binary quantenc" in text and "settings differ" not in text


@pytest.mark.parametrize("parallel_safe", [True, False])
def test_crops_of_a_network_are_coded_one_at_a_time(run, monkeypatch, parallel_safe):
    """Crops are coded by a thread per core, except a codec that is not ``parallel_safe`` (a
    network: one copy of its weights at a time), whose crops take one thread."""
    import threading
    import time

    import bench.report.recompute as recompute

    out, run_id, _data = run
    monkeypatch.setattr(fakes_bench.QuantCodec, "parallel_safe", parallel_safe)
    active, peak, lock = [0], [0], threading.Lock()
    real = recompute._recompute

    def watched(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.3)  # long enough for a second thread, if any, to enter
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(recompute, "_recompute", watched)
    with Store(out / "bench.sqlite") as store:
        stored = store.run(run_id)
        image = next(iter(store.rows(run_id, states=False))).image_id
    crops = recompute.Crops(HtmlOptions(), lambda: recompute.run_dataset(stored), None, workers=2)
    try:
        futures = [crops.reconstruction(stored, "quant", rate, image, None) for rate in ("4", "16", "32")]
        got = [f.result(timeout=30) for f in futures]
    finally:
        crops.close()
    assert len({g["uri"] for g in got}) == 3 and all(g["bytes"] > 0 for g in got)
    assert peak[0] == (2 if parallel_safe else 1)


def test_the_page_embeds_the_curves_bench_report_saved_beside_it(run, monkeypatch):
    """After `bench report`, the page beside it embeds the report's own PNGs (same data and
    code: same figure key; with a 256-colour palette, less than 60 % of the bytes) instead of
    drawing them again; a curve whose data changed since (here: its index entry) is drawn."""
    import json

    import bench.report.render as render

    out, run_id, _data = run
    monkeypatch.setattr(render, "free_cores", lambda: 1)  # drawn here, where the calls are counted
    assert main(["--out", str(out), "report", run_id]) == 0
    folder = out / run_id
    drawn: list[str] = []
    real = render._draw
    monkeypatch.setattr(render, "_draw", lambda job: drawn.append(job.stem.name) or real(job))
    assert main(["--out", str(out), "report", "--html", run_id]) == 0
    dom = _Dom()
    dom.feed((folder / "report.html").read_text(encoding="utf-8"))
    curve = next(i for i in dom.imgs if i["alt"] == "psnr vs bpp")
    with Image.open(io.BytesIO(base64.b64decode(curve["src"].split(",", 1)[1]))) as page_png, \
            Image.open(folder / "rd_psnr.png") as report_png:
        assert page_png.mode == "P" and page_png.size == report_png.size  # the report's, with a palette
        diff = np.abs(np.asarray(page_png.convert("RGB"), np.int16) - np.asarray(report_png.convert("RGB"), np.int16))
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 16 and (diff[:4, :4] == 0).all()  # white stays white
    assert len(curve["src"]) < 0.6 * len(base64.b64encode((folder / "rd_psnr.png").read_bytes()))
    assert drawn == []
    index = json.loads((folder / ".figures.json").read_text())
    index["rd_psnr"] = "0" * 64  # as if saved from other data
    (folder / ".figures.json").write_text(json.dumps(index))
    shutil.rmtree(folder / ".report-cache")
    assert main(["--out", str(out), "report", "--html", run_id]) == 0
    assert drawn == ["rd_psnr"]


@pytest.mark.parametrize("args,said", [(["--crop", "0"], "crop side 0: must be"), (["--crop", "-5"], "crop side -5"),
                                       (["--bpp", "-1"], "bpp -1.0: must be a finite rate")])
def test_bad_page_options_are_usage_errors_with_a_fix(run, capsys, args, said):
    """`--crop 0` read "unexpected MemoryError: can't allocate picture frame"."""
    out, run_id, _data = run
    assert main(["--out", str(out), "report", "--html", run_id, *args]) == 2
    err = capsys.readouterr().err
    assert said in err and "fix:" in err and "MemoryError" not in err
    with pytest.raises(__import__("bench").errors.ConfigError):
        HtmlOptions(crop=0)
