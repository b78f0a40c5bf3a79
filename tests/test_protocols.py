"""Named protocol presets: resampling rules bit for bit against independent implementations,
the presets in the cards, their application to a run (id, metadata, mIoU averaging, senders'
labels), `bench compare` refusing different presets, the figure captions, and the
`original` reference codec."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures_cityscapes import make_cityscapes_fixture
from PIL import Image

from bench.analysis.compare import check_same_protocol
from bench.cli import main
from bench.datasets import presets
from bench.datasets.cityscapes import CityscapesDataset
from bench.datasets.classes import CITYSCAPES_LABELID_TO_TRAINID
from bench.datasets.resample import box_halving, nearest_centre, nearest_topleft
from bench.errors import ConfigError, ProtocolMismatchError
from bench.execution.runner import RunConfig, execute
from bench.registry import catalog
from bench.report.figures import ProtocolWarning, figure, load_runs
from bench.storage.store import Store


# -- independent references ---------------------------------------------------------------
def two_pass_box_half(image: np.ndarray) -> np.ndarray:
    """2×2 mean as PIL's resample does it: horizontal pass, rounded to 8 bits (half up),
    then vertical pass, rounded (even sizes; integer arithmetic, no PIL)."""
    x = image.astype(np.int64)
    h = (x[:, 0::2] + x[:, 1::2] + 1) // 2
    return ((h[0::2] + h[1::2] + 1) // 2).astype(np.uint8)


def torch_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """SQ-GAN's label resize: the label tensor through F.interpolate(mode="nearest")."""
    t = torch.from_numpy(labels.astype(np.float32))[None, None]
    return F.interpolate(t, size=(height, width), mode="nearest")[0, 0].numpy().astype(np.uint8)


# -- resampling rules ---------------------------------------------------------------------
def test_box_halving_equals_two_pass_box_means_bit_for_bit():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (256, 512, 3), dtype=np.uint8)
    ours = box_halving(image, 64, 128)  # two halvings, the final bicubic is a no-op
    assert np.array_equal(ours, two_pass_box_half(two_pass_box_half(image)))
    # not the same as one 4×4 mean rounded once, nor as PIL bilinear: the rule matters
    once = np.floor(image.reshape(64, 4, 128, 4, 3).astype(float).mean((1, 3)) + 0.5).astype(np.uint8)
    assert (ours != once).mean() > 0.05
    bilinear = np.asarray(Image.fromarray(image).resize((128, 64), Image.BILINEAR))
    assert (ours != bilinear).mean() > 0.05
    # short side already < 2x the target's: no halving, straight PIL bicubic
    small = rng.integers(0, 256, (48, 96, 3), dtype=np.uint8)
    assert np.array_equal(box_halving(small, 32, 64),
                          np.asarray(Image.fromarray(small).resize((64, 32), Image.BICUBIC)))


@pytest.mark.parametrize("shape,size", [((1024, 2048), (256, 512)), ((1000, 1999), (256, 512)),
                                        ((37, 53), (256, 512)), ((333, 777), (100, 301)), ((7, 9), (5, 3))])
def test_nearest_torch_equals_f_interpolate_bit_for_bit(shape, size):
    labels = np.random.default_rng(sum(shape)).integers(0, 256, shape).astype(np.uint8)
    assert np.array_equal(nearest_topleft(labels, *size), torch_nearest(labels, *size))


def test_torch_and_pil_nearest_differ_topleft_vs_centre():
    labels = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert nearest_topleft(labels, 2, 2).tolist() == [[0, 2], [8, 10]]    # top-left of each 2×2 block
    assert nearest_centre(labels, 2, 2).tolist() == [[5, 7], [13, 15]]    # PIL: pixel under the centre


@pytest.fixture(scope="module")
def big_city(tmp_path_factory):
    """One Cityscapes frame at the real 1024×2048 size (block labels)."""
    return make_cityscapes_fixture(tmp_path_factory.mktemp("city1024"), 1, 1, size=(1024, 2048))


def _native(root):
    ds = CityscapesDataset(root, height=0, width=0)
    image_id = ds.ids()[0]
    with Image.open(ds.files(image_id)[0]) as im:
        image = np.asarray(im.convert("RGB"))
    with Image.open(ds.label_path(image_id)) as im:
        labels = CITYSCAPES_LABELID_TO_TRAINID[np.asarray(im)]
    return image_id, image, labels


def test_spic_and_sqgan_presets_resample_cityscapes_like_the_official_loaders(big_city):
    image_id, image, labels = _native(big_city)
    spic = CityscapesDataset(big_city, **presets.resolve("cityscapes", "spic").dataset).get(image_id)
    assert np.array_equal(spic.image, two_pass_box_half(two_pass_box_half(image)))     # 1024x2048 -> 256x512
    pil_labels = np.asarray(Image.fromarray(labels).resize((512, 256), Image.NEAREST))
    assert np.array_equal(spic.labels, pil_labels)
    sqgan = CityscapesDataset(big_city, **presets.resolve("cityscapes", "sqgan").dataset).get(image_id)
    assert np.array_equal(sqgan.image, np.asarray(Image.fromarray(image).resize((512, 256), Image.BILINEAR)))
    assert np.array_equal(sqgan.labels, torch_nearest(labels, 256, 512))
    assert (sqgan.labels != spic.labels).any()  # the two nearest rules disagree at block edges


# -- the presets in the cards -------------------------------------------------------------
def test_cards_hold_the_four_presets_with_every_field():
    got = presets.protocols_of("cityscapes")
    assert {"sqgan", "spic", "iwai", "native"} <= set(got)
    for p in got.values():
        assert p.source and set(p.dataset) == set(presets.DATASET_KEYS)
        assert p.sender_labels in presets.SENDER_LABELS and p.miou_average in presets.AVERAGES
    sq, sp, iw, nat = got["sqgan"], got["spic"], got["iwai"], got["native"]
    assert (sq.dataset["label_resample"], sq.miou_average, sq.sender_labels) == ("nearest-torch", "all", "ground-truth")
    assert (sp.dataset["image_resample"], sp.miou_average) == ("box-halving", "all")
    assert (iw.dataset["classes"], iw.sender_labels, iw.sender_segmenter) == ("labelid34", "segmenter", "DeepLabV3")
    assert (nat.dataset["height"], nat.miou_average) == (0, "present")
    assert "data/cityscapes_base.py" in sq.source and "resize_arr" in sp.source and "IV-A" in iw.source
    assert set(presets.protocols_of("coco")) >= {"iwai", "native"}
    assert presets.protocols_of("coco")["iwai"].dataset["classes"] == "merged9"
    with pytest.raises(ConfigError, match="no protocol 'nope'"):
        presets.resolve("cityscapes", "nope")
    assert presets.resolve("cityscapes", None).name == "card"


def test_apply_merges_dataset_metric_and_sender_settings():
    sq = presets.resolve("cityscapes", "sqgan")
    applied = presets.apply(sq, {"root": "/x"}, {}, None)
    assert applied.dataset_params == {"root": "/x", **sq.dataset}
    assert applied.semantics_segmenter is None
    assert applied.metric_params["miou"]["average"] == "all" and applied.record["miou_average_used"] == "all"
    assert applied.record["name"] == "sqgan" and applied.record["miou_average"] == "all"
    assert "16-bit" in applied.record["image_modes"]
    user = presets.apply(sq, {}, {"miou": {"average": "present"}}, None)
    assert user.metric_params["miou"]["average"] == "present" and user.record["miou_average_used"] == "present"
    with pytest.raises(ConfigError, match="fixes cityscapes.height"):
        presets.apply(sq, {"height": 128}, {}, None)
    with pytest.raises(ConfigError, match="ground-truth"):
        presets.apply(sq, {}, {}, {"name": "espnetv2"})
    iwai = presets.apply(presets.resolve("cityscapes", "iwai"), {}, {}, None)
    assert iwai.semantics_segmenter == {}  # the configured (default) segmenter; DeepLabV3 recorded
    assert iwai.record["sender_segmenter"] == "DeepLabV3"
    card = presets.apply(presets.resolve("cityscapes", None), {"height": 64}, {}, None)
    assert card.dataset_params == {"height": 64} and card.metric_params == {"miou": {"segmenter": "espnetv2"}}
    # each protocol names its evaluation segmenter card; --param miou.segmenter wins
    assert iwai.metric_params["miou"]["segmenter"] == "deeplabv3-r101-cityscapes"
    coco = presets.apply(presets.resolve("coco", "iwai"), {}, {"miou": {"segmenter": "espnetv2"}}, None)
    assert coco.metric_params["miou"]["segmenter"] == "espnetv2" == coco.record["miou_segmenter_used"]


# -- runs: id, metadata, compare, figures, original --------------------------------------
@pytest.fixture()
def city_runs(tmp_path):
    root = make_cityscapes_fixture(tmp_path / "city", 1, 2, size=(256, 512))
    out = tmp_path / "results"
    ids = {}
    with Store(out / "bench.sqlite") as store:
        for name in (None, "sqgan", "spic"):
            config = RunConfig(dataset="cityscapes", codecs=["original", "jpeg"], metrics=["psnr"],
                               rates={"jpeg": ["30", "80"]}, dataset_params={"root": str(root)}, protocol=name,
                               workers=0, use_cache=False)
            ids[name or "card"] = execute(config, store, progress=False)
    return out, ids


def test_protocol_is_part_of_the_run_id_and_metadata(city_runs):
    out, ids = city_runs
    assert len(set(ids.values())) == 3
    with Store(out / "bench.sqlite") as store:
        runs = {k: store.run(v) for k, v in ids.items()}
    assert runs["card"]["meta"]["protocol"]["name"] == "card"
    sq = runs["sqgan"]["meta"]
    assert sq["protocol"]["name"] == "sqgan" and sq["protocol"]["dataset"]["label_resample"] == "nearest-torch"
    assert sq["dataset"]["protocol"]["label_resize"].startswith("nearest(torch")
    assert runs["spic"]["meta"]["dataset"]["protocol"]["image_resize"].startswith("box-halving")
    assert runs["sqgan"]["config"]["protocol"] == "sqgan"


def test_compare_refuses_runs_of_different_protocols(city_runs, capsys):
    out, ids = city_runs
    with Store(out / "bench.sqlite") as store:
        a, b, c = (store.run(ids[k]) for k in ("card", "sqgan", "spic"))
    with pytest.raises(ProtocolMismatchError, match="protocol: 'card' vs 'sqgan'"):
        check_same_protocol(a, b)
    with pytest.raises(ProtocolMismatchError, match="'sqgan' vs 'spic'"):
        check_same_protocol(b, c)
    assert main(["--out", str(out), "compare", ids["sqgan"], ids["spic"]]) == ProtocolMismatchError.exit_code == 5
    assert "different protocols" in capsys.readouterr().err
    # old runs without a recorded preset count as "card"
    old = {**a, "meta": {k: v for k, v in a["meta"].items() if k != "protocol"}}
    check_same_protocol(old, a)


def test_figure_presets_name_their_protocol_and_warn_on_another(city_runs):
    out, ids = city_runs
    with Store(out / "bench.sqlite") as store:
        with pytest.warns(ProtocolWarning, match="not the paper's 'sqgan'"):
            fig = figure("sqgan-fig12", load_runs(store, [ids["card"]]))
        assert "NOT the paper's (sqgan)" in " ".join(fig.caption_lines)  # caption strip (issue 22)
        fig = figure("sqgan-fig12", load_runs(store, [ids["sqgan"]]))
        assert "protocol: sqgan (the paper's)" in " ".join(fig.caption_lines)
        psnr_ax = [ax for ax in fig.axes if ax.get_title() == "PSNR"][0]
        labels = [line.get_label() for line in psnr_ax.get_lines()]
        assert "jpeg" in labels and not any(lab.startswith("original") for lab in labels)  # PSNR inf: no line


def test_original_codec_is_the_clean_reference_row(city_runs):
    out, ids = city_runs
    root = out.parent / "city"
    ds = CityscapesDataset(root)
    with Store(out / "bench.sqlite") as store:
        rows = [r for r in store.rows(ids["card"]) if r.codec == "original"]
    assert len(rows) == 2 and all(r.rate == "lossless" for r in rows)
    for row in rows:
        image = ds.get(row.image_id).image
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "PNG", compress_level=9)  # independent: PIL's own PNG writer
        assert row.bytes == {"image": len(buf.getvalue())}
        assert row.bpp == pytest.approx(8 * len(buf.getvalue()) / (256 * 512))
        assert math.isinf(row.metrics["psnr"]) and row.metrics["mse"] == 0.0
    codec = catalog.make_codec("original")
    img = np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    assert np.array_equal(codec.decode(codec.encode(img, "lossless").parts), img)
    with pytest.raises(ConfigError):
        codec.encode(img, "0.5")


def test_cli_protocol_flag_runs_the_preset_and_refuses_bad_input(tmp_path, capsys):
    root = make_cityscapes_fixture(tmp_path / "city", 1, 1, size=(256, 512))
    out = tmp_path / "res"
    base = ["--out", str(out), "run", "--codecs", "original", "--metrics", "psnr", "--dataset", "cityscapes",
            "--root", str(root), "-q", "--no-report"]
    assert main(base + ["--protocol", "sqgan"]) == 0
    with Store(out / "bench.sqlite") as store:
        run = store.run("latest")
    assert run["meta"]["protocol"]["name"] == "sqgan" and run["config"]["protocol"] == "sqgan"
    capsys.readouterr()
    assert main(base + ["--protocol", "nope"]) == ConfigError.exit_code
    assert "has no protocol 'nope' (it has: sqgan, spic, iwai, native)" in capsys.readouterr().err
    assert main(base + ["--protocol", "sqgan", "--param", "cityscapes.height=128"]) == ConfigError.exit_code
    assert "fixes cityscapes.height=256" in capsys.readouterr().err
