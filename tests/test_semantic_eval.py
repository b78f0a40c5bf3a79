"""Issue 24: semantic metrics where they mean something.

* a COCO fixture run with a random-weights mmseg COCO-Stuff architecture (the card's
  DeepLabV3 R101, test pipeline shrunk) gives ``miou_gt`` over the 171 classes and the
  9-class column ``miou_gt9`` against the ground truth, checked by hand from the maps;
* the off-domain caveat: ESPNetv2 (Cityscapes) on COCO records and shows it, on Cityscapes not;
* the ``original`` codec scores per-image IoU 1 and drop 0 under every protocol;
* ``--split`` / ``evaluate(split=)`` select the split.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from fixtures_cityscapes import make_cityscapes_fixture

from bench import api
from bench.cli import main
from bench.datasets.classes import (
    COCO_MERGED_9,
    COCO_RAW_TO_MERGED9,
    COCO_RAW_TO_STUFF171,
    COCO_STUFF171_TO_MERGED9,
    COCO_STUFF_171,
    CONVERSIONS,
    apply_lut,
)
from bench.errors import ConfigError
from bench.execution.runner import RunConfig, execute
from bench.metrics.miou import MIoU
from bench.report import render_console, summarise, to_markdown
from bench.report.curves import rd_figure
from bench.report.evidence import row_iou
from bench.report.html import render_html
from bench.report.summary import column_info
from bench.segmenters import make_segmenter, segmenter_card
from bench.storage.store import Store

HAVE_MMSEG = all(importlib.util.find_spec(m) is not None for m in ("mmseg", "mmcv", "mmengine"))
COCO_SEG = "deeplabv3-r101-coco-stuff164k"
# ESPNetv2 at its smallest published size: the protocol logic, not the network, is under test
SMALL_ESPNET = {"segmenter": "espnetv2", "segmenter_params": {"scale": 0.5, "input_size": "512x256"},
                "noise_floor": False}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Originals' segmentations are cached in a folder of this test only."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))


def _iou_by_hand(pred: np.ndarray, ref: np.ndarray, classes: int) -> float:
    """Dataset mIoU over classes present (one image): independent of bench.metrics.miou."""
    valid = ref < classes
    ious = []
    for c in range(classes):
        p, r = (pred == c) & valid, (ref == c) & valid
        union = np.count_nonzero(p | r)
        if union:
            ious.append(np.count_nonzero(p & r) / union)
    return float(np.mean(ious))


def test_segmenter_cards_declare_domain_classes_weights_and_config(capsys: pytest.CaptureFixture) -> None:
    for name, domain, classes, digest in (("espnetv2", "cityscapes", "cityscapes19", "a72d5969"),
                                          ("deeplabv3-r101-cityscapes", "cityscapes", "cityscapes19", "9e428899"),
                                          (COCO_SEG, "coco-stuff", "cocostuff171", "13600dc2")):
        card = segmenter_card(name)
        assert card["domain"] == domain and card["class_set"] == classes
        weights = card["weights"]
        assert weights["sha256"].startswith(digest) and weights["url"].startswith("https://")
        assert weights["url"].endswith(weights["file"])
    seg = make_segmenter(COCO_SEG, allow_random_weights=True)
    assert seg.class_set is COCO_STUFF_171 and seg.domain == "coco-stuff"
    assert seg.spec.sha256 == "13600dc2" and seg.spec.filename.endswith("-13600dc2.pth")
    if HAVE_MMSEG:  # the config shipped inside mmsegmentation: R101, 171 output classes
        from mmengine import Config

        cfg = Config.fromfile(seg.config)
        assert cfg.model.backbone.depth == 101 and cfg.model.decode_head.num_classes == 171
        city = Config.fromfile(make_segmenter("deeplabv3-r101-cityscapes").config)
        assert city.model.decode_head.type == "ASPPHead" and city.model.decode_head.num_classes == 19
    assert main(["list", "segmenters"]) == 0  # bench list shows each card's domain and classes
    # the 171 -> 9 table agrees with the raw -> 9 table on every used raw id
    raw = np.arange(256, dtype=np.uint8)
    assert np.array_equal(apply_lut(apply_lut(raw, COCO_RAW_TO_STUFF171), COCO_STUFF171_TO_MERGED9),
                          np.where(COCO_RAW_TO_STUFF171 == 255, 255, COCO_RAW_TO_MERGED9))
    listing = capsys.readouterr().out
    assert "domain: coco-stuff; classes: cocostuff171" in listing and "domain: not declared" in listing


def _small_mmseg_config(tmp_path: Path) -> Path:
    """The card's real config with a small test-pipeline resize (R101 at 512 px is slow on 2 cores)."""
    base = make_segmenter(COCO_SEG).config
    cfg = tmp_path / "coco_small.py"
    cfg.write_text(f"_base_ = {base!r}\n"
                   "test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(96, 64), "
                   "keep_ratio=True), dict(type='PackSegInputs')]\n")
    return cfg


@pytest.mark.skipif(not HAVE_MMSEG, reason="mmcv/mmsegmentation not installed (scripts/build_mmcv.sh)")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_coco_iwai_run_scores_171_and_9_classes_against_ground_truth(shared_dir: Path, tmp_path: Path) -> None:
    root = shared_dir / "data" / "coco"
    if not (root / "stuffthingmaps_trainval2017").is_dir():
        pytest.skip("no COCO-Stuff fixture")
    metric = {"segmenter_params": {"config": str(_small_mmseg_config(tmp_path))}, "noise_floor": False}
    rows = api.evaluate("original", "coco", metrics="miou", limit=1, protocol="iwai",
                        dataset_params={"root": str(root)}, metric_params={"miou": metric},
                        allow_random_weights=True, store=tmp_path / "res", use_cache=False)
    assert len(rows) == 1 and rows["status"].iloc[0] == "ok"
    with Store(tmp_path / "res" / "bench.sqlite") as store:
        run = store.run("latest")
        row = next(iter(store.rows(run["run_id"])))
        summary = summarise(store, run["run_id"])
    described = run["meta"]["metrics"]["miou"]
    assert described["segmenter"]["card"] == COCO_SEG and described["segmenter"]["random_weights"]
    assert described["views"] == {"gt9": "coco_merged9"} and run["meta"]["caveats"] == []  # in domain
    assert run["meta"]["dataset"]["protocol"]["class_set"] == "coco_merged9"  # the senders' classes
    # by hand: the same random network's labels of the image vs the stuffthingmap, 171 and 9 classes
    from bench.datasets.coco import CocoStuffDataset

    sample = CocoStuffDataset(root, classes="merged9").get(row.image_id)
    seg = make_segmenter(COCO_SEG, config=metric["segmenter_params"]["config"], allow_random_weights=True,
                         device="cpu")
    pred = seg.predict(sample.image)
    raw = sample.alt_labels["cocostuff182"]
    gt171 = apply_lut(raw, CONVERSIONS[("cocostuff182", "cocostuff171")])
    want171 = _iou_by_hand(pred, gt171, 171)
    want9 = _iou_by_hand(apply_lut(pred, COCO_STUFF171_TO_MERGED9), sample.labels, 9)
    assert np.array_equal(apply_lut(raw, COCO_RAW_TO_MERGED9), sample.labels)
    # the run's network ran with the thread count the run planned, this one with torch's current one: a
    # random network's logits differ at float rounding, which flips a handful of near-tie pixels (measured
    # 5e-6 in IoU under a busy suite); a wrong class mapping moves these values by far more than 1e-4
    close = {"rel": 0, "abs": 1e-4}
    assert row.metrics["miou_gt_img"] == pytest.approx(want171, **close)
    assert row.metrics["miou_gt9_img"] == pytest.approx(want9, **close)
    assert row.metrics["miou_orig_img"] == 1.0 and row_iou(row)["iou_drop_orig"] == 0.0
    # the dataset-level columns (one image, classes present: the same values), 171 and 9 classes
    col = {i.key: c for c, i in column_info(summary).items() if i.kind == "dataset"}
    assert summary[col["miou_gt"]].iloc[0] == pytest.approx(want171, **close)
    assert summary[col["miou_gt9"]].iloc[0] == pytest.approx(want9, **close)
    state = row.states["miou"]
    assert len(state["union_gt"]) == 171 and 0 < np.count_nonzero(state["union_gt9"]) <= COCO_MERGED_9.num_classes


def _run(store: Store, dataset: str, root: Path, protocol: str | None = None, **kw) -> str:
    config = RunConfig(dataset=dataset, codecs=["original"], metrics=["miou"], limit=1, protocol=protocol,
                       dataset_params={"root": str(root)}, metric_params={"miou": dict(SMALL_ESPNET)},
                       metric_options={"allow_random_weights": True, "device": "cpu"}, workers=0,
                       use_cache=False, **kw)
    return execute(config, store, progress=False)


def test_off_domain_caveat_for_espnetv2_on_coco_and_not_on_cityscapes(shared_dir: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    coco = shared_dir / "data" / "coco"
    if not (coco / "images").is_dir():
        pytest.skip("no COCO fixture")
    store = Store(tmp_path / "res" / "bench.sqlite")
    coco_run = _run(store, "coco", coco)
    city = make_cityscapes_fixture(tmp_path / "city", 1, 1, size=(256, 512))
    city_run = _run(store, "cityscapes", city)
    caveats = store.run(coco_run)["meta"]["caveats"]
    assert len(caveats) == 1 and caveats[0].startswith("off-domain: the mIoU segmenter espnetv2 was trained on "
                                                        "cityscapes; dataset coco shows coco-stuff images")
    assert store.run(city_run)["meta"]["caveats"] == []
    # every output shows it: Markdown and console tables, the mIoU rate curve, the HTML page
    coco_summary, city_summary = summarise(store, coco_run), summarise(store, city_run)
    assert "Caveat: off-domain" in to_markdown(coco_summary) and "off-domain" not in to_markdown(city_summary)
    console = render_console(coco_summary)
    assert "Caveat: off-domain" in console and max(len(line) for line in console.splitlines()) <= 100
    assert "off-domain" not in render_console(city_summary)
    column = next(c for c in coco_summary.columns if c.startswith("miou_orig"))
    # in the figure's caption strip (below the axes, also the .caption.txt), never over the data
    assert any("off-domain" in line for line in rd_figure(coco_summary, column).caption_lines)
    assert not any("off-domain" in line for line in rd_figure(city_summary, column).caption_lines)
    assert "<b>Caveat:</b> off-domain" in render_html(store, [coco_run])
    assert "off-domain" not in render_html(store, [city_run])
    # bench run prints it (the library logs it; the CLI's report lists it)
    capsys.readouterr()
    assert main(["--out", str(tmp_path / "cli"), "run", "--codecs", "original", "--metrics", "miou", "--dataset",
                 "coco", "--root", str(coco), "--limit", "1", "--allow-random-weights", "--device", "cpu", "-q",
                 "--param", "miou.segmenter=espnetv2", "--param", "miou.noise_floor=false"]) == 0
    assert "Caveat: off-domain: the mIoU segmenter espnetv2" in capsys.readouterr().out
    store.close()


@pytest.mark.parametrize("protocol", [None, "sqgan", "spic", "iwai", "native"])
def test_original_scores_per_image_iou_one_and_drop_zero_under_every_protocol(tmp_path: Path,
                                                                             protocol: str | None) -> None:
    root = make_cityscapes_fixture(tmp_path / "city", 1, 1, size=(256, 512))
    store = Store(tmp_path / "res" / "bench.sqlite")
    run_id = _run(store, "cityscapes", root, protocol)
    (row,) = list(store.rows(run_id))
    meta = store.run(run_id)["meta"]
    average = meta["metrics"]["miou"]["average"]
    assert average == {"sqgan": "all", "spic": "all"}.get(protocol or "", "present")
    assert row.metrics["miou_orig_img"] == 1.0 and row_iou(row)["iou_drop_orig"] == 0.0
    assert math.isfinite(row.metrics["miou_gt_img"])  # iwai: the 34 labelIds scored at the 19 trainIds
    if protocol == "iwai":
        assert meta["dataset"]["protocol"]["class_set"] == "cityscapes34"
        assert int(row.states["miou"]["images_gt"]) == 1 and len(row.states["miou"]["union_gt"]) == 19
    # the dataset-level value keeps the protocol's averaging: under "all", absent classes count 0
    present = int(np.count_nonzero(row.states["miou"]["union_orig"]))
    summary = summarise(store, run_id)
    column = next(c for c, i in column_info(summary).items() if i.kind == "dataset" and i.key == "miou_orig")
    assert summary[column].iloc[0] == pytest.approx(1.0 if average == "present" else present / 19)
    store.close()


def test_per_image_iou_counts_classes_present_in_either_map() -> None:
    metric = MIoU(segmenter=make_segmenter("espnetv2", scale=0.5, input_size="512x256", allow_random_weights=True),
                  average="all", noise_floor=False)
    state = metric.init()
    inter, union = np.array([3, 0, 0] + [0] * 16), np.array([4, 2, 0] + [0] * 16)
    from bench.metrics.miou import mean_iou

    # class 0: 3/4, class 1 (only in one map): 0/2 → per image (3/4 + 0) / 2; dataset "all": / 19
    assert mean_iou(inter, union, "present") == pytest.approx(0.375)
    assert mean_iou(inter, union, "all") == pytest.approx(0.75 / 19)
    assert state["inter_orig"].shape == (19,)


def test_split_option_selects_the_split(tmp_path: Path) -> None:
    root = make_cityscapes_fixture(tmp_path / "city", 1, 2, size=(64, 128), split="val")
    make_cityscapes_fixture(root, 1, 3, size=(64, 128), split="train", seed=1)
    out = tmp_path / "res"
    base = ["--out", str(out), "run", "--codecs", "original", "--metrics", "psnr", "--dataset", "cityscapes",
            "--root", str(root), "-q", "--no-report"]
    assert main(base + ["--split", "train"]) == 0
    with Store(out / "bench.sqlite") as store:
        run = store.run("latest")
        assert run["meta"]["dataset"]["n_images"] == 3 and run["meta"]["dataset"]["protocol"]["split"] == "train"
        assert run["config"]["dataset_params"]["split"] == "train"
    assert main(base + ["--split", "val"]) == 0
    with Store(out / "bench.sqlite") as store:
        assert store.run("latest")["meta"]["dataset"]["n_images"] == 2
    assert main(base + ["--split", "val", "--param", "cityscapes.split=train"]) == ConfigError.exit_code
    rows = api.evaluate("original", "cityscapes", metrics="psnr", split="train", store=out,
                        dataset_params={"root": str(root)})
    assert len(rows) == 3 and rows["run_id"].nunique() == 1


def test_the_miou_segmenters_caveat_goes_only_where_miou_is_shown() -> None:
    """A figure without mIoU (Iwai's Fig. 8: LPIPS, FID, PSNR, MS-SSIM; a PSNR curve) does not
    carry the mIoU segmenter's off-domain caveat; the senders' label-map caveat concerns every
    value of a semantic codec and stays."""
    from bench.report.caveats import caveat_note, off_domain_caveat, shown_caveats

    miou = off_domain_caveat("espnetv2", "cityscapes", "coco", "coco-stuff")
    senders = off_domain_caveat("espnetv2", "cityscapes", "coco", "coco-stuff", role="senders' label-map")
    assert miou and senders
    assert shown_caveats([miou, senders, miou]) == [miou, senders]
    assert shown_caveats([miou, senders], miou=False) == [senders]
    runs = [{"meta": {"caveats": [miou]}}]
    assert caveat_note(runs) == miou and caveat_note(runs, miou=False) == ""
