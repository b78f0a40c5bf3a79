"""Dataset adapters: Cityscapes (label table vs cityscapesscripts, resizing), COCO-Stuff
on the shared real files, folder, the bundled demo set, and the cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_cityscapes import FIXTURE_LABEL_IDS, make_cityscapes_fixture
from PIL import Image

from bench.datasets.base import read_label
from bench.datasets.cityscapes import CityscapesDataset
from bench.datasets.classes import (
    CITYSCAPES_19,
    COCO_MERGED_9,
    COCO_RAW_NAMES,
    COCO_RAW_TO_MERGED9,
    COCO_RAW_TO_STUFF171,
    COCO_STUFF_171,
    COCO_UNUSED_RAW_IDS,
)
from bench.datasets.coco import CocoStuffDataset
from bench.datasets.demo import DemoDataset
from bench.datasets.folder import FolderDataset
from bench.datasets.protocol import Resolution
from bench.errors import BenchError, ConfigError, DatasetNotFoundError
from bench.registry import catalog


def cityscapesscripts_lut() -> np.ndarray:
    """labelIds PNG value → trainId built only from cityscapesscripts' label table."""
    labels = pytest.importorskip("cityscapesscripts.helpers.labels").labels
    lut = np.full(256, 255, dtype=np.uint8)
    ids = set()
    for label in labels:
        ids.add(label.id)
        # -1 (license plate) is 255 as uint8; trainId 255 / -1 both mean "ignore"
        lut[label.id & 0xFF] = label.trainId if 0 <= label.trainId < 255 else 255
    assert ids == set(range(34)) | {-1}
    return lut


# ------------------------------------------------------------------------------ Cityscapes

@pytest.fixture(scope="module")
def city_root(tmp_path_factory) -> Path:
    return make_cityscapes_fixture(tmp_path_factory.mktemp("cs"), n_cities=2, per_city=2, size=(256, 512))


def test_cityscapes_trainids_match_cityscapesscripts(city_root):
    ref = cityscapesscripts_lut()
    ds = CityscapesDataset(city_root, height=0, width=0)  # native: compare pixel by pixel
    ids = ds.ids()
    assert ids == sorted(ids) and len(ids) == 4 and ids[0] == "aachen_000000_000019"
    for image_id in ids:
        raw = read_label(ds.label_path(image_id))
        assert set(np.unique(raw)) == set(FIXTURE_LABEL_IDS)  # every labelId (and -1 → 255) present
        sample = ds.load(image_id)
        np.testing.assert_array_equal(sample.labels, ref[raw])
        assert sample.labels.dtype == np.uint8 and sample.image.shape == (256, 512, 3)
    # all 19 classes and the ignore value occur, nothing else
    assert set(np.unique(ds.load(ids[0]).labels)) == set(range(19)) | {255}


def test_cityscapes_labeltrainids_file_equals_labelids_mapping(city_root):
    pytest.importorskip("cityscapesscripts")
    a = CityscapesDataset(city_root, height=0, width=0)
    b = CityscapesDataset(city_root, height=0, width=0, label_file="labelTrainIds")
    for image_id in a.ids():
        np.testing.assert_array_equal(a.load(image_id).labels, b.load(image_id).labels)
    assert a.protocol() != b.protocol()


def test_cityscapes_labelid34_keeps_all_ids(city_root):
    ds = CityscapesDataset(city_root, height=0, width=0, classes="labelid34")
    image_id = ds.ids()[0]
    raw = read_label(ds.label_path(image_id))
    np.testing.assert_array_equal(ds.load(image_id).labels, raw)  # ids 0..33 unchanged, 255 stays 255
    assert ds.class_set.num_classes == 34 and ds.protocol()["class_set"] == "cityscapes34"


def test_cityscapes_resize_bilinear_image_nearest_labels(tmp_path):
    root = make_cityscapes_fixture(tmp_path, n_cities=1, per_city=1, size=(512, 1024))
    ref = cityscapesscripts_lut()
    ds = CityscapesDataset(root)  # default protocol: 256×512
    image_id = ds.ids()[0]
    sample = ds.load(image_id)
    src = Image.open(ds.files(image_id)[0]).convert("RGB")
    assert sample.image.shape == (256, 512, 3) and sample.image.dtype == np.uint8
    np.testing.assert_array_equal(sample.image, np.asarray(src.resize((512, 256), Image.BILINEAR)))
    assert not np.array_equal(sample.image, np.asarray(src.resize((512, 256), Image.NEAREST)))
    raw = read_label(ds.label_path(image_id))
    expected = np.asarray(Image.fromarray(ref[raw]).resize((512, 256), Image.NEAREST))
    np.testing.assert_array_equal(sample.labels, expected)
    assert set(np.unique(sample.labels)) <= set(range(19)) | {255}
    proto = ds.protocol()
    assert (proto["height"], proto["width"], proto["image_resize"], proto["label_resize"]) == (
        256, 512, "bilinear(PIL)", "nearest")
    assert proto["class_set"] == CITYSCAPES_19.name and proto["split"] == "val"


def test_cityscapes_missing_root_names_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYSCAPES_ROOT", raising=False)
    for ds in (CityscapesDataset(), CityscapesDataset(tmp_path / "nope")):
        with pytest.raises(DatasetNotFoundError) as info:
            ds.ids()
        msg = str(info.value)
        assert "leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png" in msg
        assert "gtFine_labelIds.png" in msg and "cityscapes-dataset.com" in msg and "CITYSCAPES_ROOT" in msg


def test_cityscapes_root_from_env_and_missing_label(city_root, monkeypatch, tmp_path):
    monkeypatch.setenv("CITYSCAPES_ROOT", str(city_root))
    ds = CityscapesDataset()
    assert ds.root == city_root and len(ds.ids()) == 4
    assert CityscapesDataset(tmp_path).root == tmp_path  # an explicit root wins over the env
    with pytest.raises(DatasetNotFoundError, match="label map"):
        CityscapesDataset(city_root, label_file="trainIds").load(ds.ids()[0])


def test_cityscapes_rejects_bad_params(city_root):
    with pytest.raises(ConfigError):
        CityscapesDataset(city_root, classes="trainid20")
    with pytest.raises(ConfigError):
        CityscapesDataset(city_root, height=256, width=None)
    with pytest.raises(ConfigError):
        CityscapesDataset(city_root, classes="labelid34", label_file="labelTrainIds")


def test_cityscapes_content_hash_tracks_protocol_and_bytes(tmp_path):
    root = make_cityscapes_fixture(tmp_path, n_cities=1, per_city=2, size=(64, 128))
    a = CityscapesDataset(root).content_hash()
    assert a == CityscapesDataset(root).content_hash()
    assert a != CityscapesDataset(root, height=128, width=256).content_hash()
    label = next((root / "gtFine").rglob("*_labelIds.png"))
    arr = read_label(label)
    arr[0, 0] = 7 if arr[0, 0] != 7 else 8
    Image.fromarray(arr).save(label)
    assert CityscapesDataset(root).content_hash() != a


# ------------------------------------------------------------------------------ COCO-Stuff

COCO_IDS = ["000000000139", "000000000785", "000000001268", "000000001490",
            "000000001503", "000000001584", "000000001818", "000000001993"]


def test_coco_class_tables():
    # 182 raw names, 11 unused thing ids, 171 used; stuff171 is a bijection used ids → 0..170
    assert len(COCO_RAW_NAMES) == 182 and len(COCO_UNUSED_RAW_IDS) == 11
    assert [COCO_RAW_NAMES[i] for i in COCO_UNUSED_RAW_IDS] == [
        "street sign", "hat", "shoe", "eye glasses", "plate", "mirror", "window", "desk", "door",
        "blender", "hair brush"]
    used = [i for i in range(182) if i not in COCO_UNUSED_RAW_IDS]
    assert sorted(COCO_RAW_TO_STUFF171[used].tolist()) == list(range(171))
    assert all(COCO_RAW_TO_STUFF171[i] == 255 for i in COCO_UNUSED_RAW_IDS)
    assert all(COCO_RAW_TO_STUFF171[i] == 255 for i in range(182, 256))
    assert COCO_STUFF_171.names[0] == "person" and COCO_STUFF_171.names[-1] == "wood"
    assert COCO_STUFF_171.names[COCO_RAW_TO_STUFF171[123]] == "grass"
    # merged9: spot checks of the documented decisions; every used id lands in 0..8
    merged = {COCO_RAW_NAMES[i]: COCO_MERGED_9.names[COCO_RAW_TO_MERGED9[i]] for i in used}
    assert set(COCO_RAW_TO_MERGED9[used].tolist()) == set(range(9))
    expect = {"person": "person", "zebra": "animal", "teddy bear": "others", "grass": "plant",
              "tree": "plant", "potted plant": "plant", "sky-other": "sky", "clouds": "sky", "fog": "sky",
              "sea": "water", "river": "water", "house": "building", "wall-brick": "others",
              "mountain": "mountain", "hill": "mountain", "rock": "others", "road": "road",
              "pavement": "others", "car": "others"}
    assert {k: merged[k] for k in expect} == expect
    assert COCO_RAW_TO_MERGED9[255] == 255


@pytest.mark.parametrize("classes,values", [("stuff171", set(range(171))), ("merged9", set(range(9))),
                                            ("raw182", set(range(182)))])
def test_coco_on_shared_files(shared_dir, classes, values):
    root = shared_dir / "data" / "coco"
    ds = CocoStuffDataset(root, classes=classes)
    assert ds.ids() == COCO_IDS
    for image_id in ds.ids():
        sample = ds.load(image_id)
        raw = np.asarray(Image.open(root / "stuffthingmaps_trainval2017" / "val2017" / f"{image_id}.png"))
        assert sample.image.shape[:2] == raw.shape and sample.labels.shape == raw.shape
        assert set(np.unique(sample.labels)) <= values | {255}
        np.testing.assert_array_equal(sample.labels == 255, raw == 255)  # 255 stays 255, nothing else becomes 255
        if classes == "stuff171":  # the mapping is order-preserving, hence injective on the used ids
            for r in np.unique(raw[raw != 255]):
                assert COCO_STUFF_171.names[np.unique(sample.labels[raw == r])[0]] == COCO_RAW_NAMES[r]
    # the zebra photo: zebra → animal, grass → plant in merged9
    if classes == "merged9":
        labels = ds.load("000000001818").labels
        assert set(np.unique(labels)) == {COCO_MERGED_9.names.index("animal"),
                                          COCO_MERGED_9.names.index("plant"), 255}


def test_coco_resize_and_layouts(shared_dir, tmp_path, monkeypatch):
    root = shared_dir / "data" / "coco"
    ds = CocoStuffDataset(root, height=256, width=256, fit="center_crop")
    s = ds.load("000000000139")  # 426×640 → crop 426×426 → 256×256
    assert s.image.shape == (256, 256, 3) and s.labels.shape == (256, 256)
    assert Resolution(256, 256, "center_crop").crop_box(426, 640) == (0, 107, 426, 426)
    assert ds.protocol()["fit"] == "center_crop" and ds.protocol()["class_set"] == "cocostuff171"
    monkeypatch.setenv("COCO_ROOT", str(root))
    assert CocoStuffDataset().ids() == COCO_IDS
    monkeypatch.delenv("COCO_ROOT")
    with pytest.raises(DatasetNotFoundError, match="stuffthingmaps_trainval2017"):
        CocoStuffDataset(tmp_path).ids()


# ------------------------------------------------------------------------------ folder

def test_folder_sorted_ids_and_lazy_failure(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg", "c.webp", "d.bmp"):
        Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "z_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "sub" / "e.tif")
    ds = FolderDataset(tmp_path)
    assert ds.ids() == ["a", "b", "c", "d", "z_broken"]  # sorted; the broken file is listed
    assert FolderDataset(tmp_path, recursive=True).ids() == ["a", "b", "c", "d", "sub/e", "z_broken"]
    s = ds.load("b")
    np.testing.assert_array_equal(s.image, np.asarray(Image.open(tmp_path / "b.png")))
    assert s.labels is None and ds.class_set is None
    with pytest.raises(BenchError, match="cannot decode"):
        ds.load("z_broken")
    assert FolderDataset(tmp_path, height=6, width=10).load("a").image.shape == (6, 10, 3)
    with pytest.raises(DatasetNotFoundError):
        FolderDataset(tmp_path / "missing").ids()


def test_kodak_card_on_shared_files(shared_dir, monkeypatch):
    monkeypatch.setenv("KODAK_ROOT", str(shared_dir / "data" / "kodak"))
    ds = catalog.make_dataset("kodak")
    assert ds.name == "kodak" and ds.protocol()["dataset"] == "kodak"
    assert ds.ids() == [f"kodim{i:02d}" for i in range(1, 25)]
    assert ds.load("kodim01").image.shape == (512, 768, 3)


# ------------------------------------------------------------------------------ demo

def test_demo_loads_deterministic_images_and_synthetic_labels():
    ds = catalog.make_dataset("demo")
    ids = ds.ids()
    assert len(ids) >= 4 and "astronaut" in ids
    first = [ds.load(i) for i in ids]
    again = [DemoDataset().load(i) for i in ids]
    for a, b in zip(first, again):
        assert a.image.shape == (256, 512, 3) and a.image.dtype == np.uint8
        assert a.labels.shape == (256, 512) and a.labels.dtype == np.uint8
        assert set(np.unique(a.labels)) <= set(range(19)) | {255}
        assert len(set(np.unique(a.labels)) - {255}) >= 2  # a real map, not one constant class
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels, b.labels)
    assert ds.protocol()["labels"] == "synthetic-v1" and ds.protocol()["class_set"] == "cityscapes19"
    assert ds.content_hash() == DemoDataset().content_hash()
    assert ds.content_hash() != DemoDataset(height=128, width=256).content_hash()
    # the rocket photo has blue sky at the top: the rule must call it sky (trainId 10)
    rocket = first[ids.index("rocket")].labels
    assert np.mean(rocket[:64] == 10) > 0.8


def test_demo_labelid34_is_the_inverse_table():
    a, b = DemoDataset().load("astronaut"), DemoDataset(classes="labelid34").load("astronaut")
    ref = cityscapesscripts_lut()
    np.testing.assert_array_equal(ref[b.labels], a.labels)  # labelId → trainId undoes trainId → labelId


def test_all_cards_build():
    names = catalog.registry("dataset").names()
    assert {"cityscapes", "coco", "folder", "kodak", "demo"} <= set(names)
    for name in ("cityscapes", "coco", "folder", "kodak", "demo"):
        ds = catalog.make_dataset(name)
        assert ds.protocol()["dataset"] == name


# -- image modes ---------------------------------------------------------------------------
def test_16bit_grayscale_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    from bench.datasets.base import read_rgb

    values = np.array([[0, 128, 129, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")  # Pillow writes a 16-bit grayscale PNG
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")
    info: dict = {}
    rgb = read_rgb(tmp_path / "g16.png", info)
    # round(v * 255 / 65535): 128/257 = 0.498 -> 0, 129/257 = 0.502 -> 1, 32768/257 = 127.5 -> 128
    assert rgb[..., 0].tolist() == [[0, 0, 1, 1, 128, 255]]
    assert (rgb == rgb[..., :1]).all() and info["bits"] == 16
    sample = FolderDataset(tmp_path).get("g16")
    assert sample.meta["source_image"]["bits"] == 16


def test_rgb48_and_alpha_images_are_scaled_and_composited_on_white(tmp_path):
    import imagecodecs

    from bench.datasets.base import read_rgb

    rgb48 = np.array([[[65535, 32768, 0], [257, 514, 1000]]], dtype=np.uint16)
    (tmp_path / "c48.png").write_bytes(imagecodecs.png_encode(rgb48))
    info: dict = {}
    assert read_rgb(tmp_path / "c48.png", info).tolist() == [[[255, 128, 0], [1, 2, 4]]]  # 1000/257 = 3.89
    assert info == {"mode": "RGB48", "bits": 16}
    rgba64 = np.array([[[65535, 0, 0, 0], [0, 0, 65535, 65535]]], dtype=np.uint16)  # transparent red, opaque blue
    (tmp_path / "c64.png").write_bytes(imagecodecs.png_encode(rgba64))
    assert read_rgb(tmp_path / "c64.png").tolist() == [[[255, 255, 255], [0, 0, 255]]]
    la32 = np.array([[[25700, 32896], [65535, 0]]], dtype=np.uint16)  # grey 100, alpha 128 (x257); white, clear
    (tmp_path / "la32.png").write_bytes(imagecodecs.png_encode(la32))
    assert read_rgb(tmp_path / "la32.png")[..., 0].tolist() == [[177, 255]]
    # LA: grey 100 at alpha 128 over white = 100*128/255 + 255*127/255 = 177.2 -> 177
    Image.fromarray(np.array([[[100, 128], [7, 255]]], dtype=np.uint8), "LA").save(tmp_path / "la.png")
    info = {}
    assert read_rgb(tmp_path / "la.png", info)[..., 0].tolist() == [[177, 7]]
    assert info["alpha"] == "on-white"
    # palette with a transparent entry
    pal = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), "P")
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert read_rgb(tmp_path / "p.png").tolist() == [[[255, 255, 255], [200, 100, 50]]]
    # CMYK (JPEG-free: TIFF keeps the values exactly): pure magenta ink -> (255, 0, 255)
    Image.new("CMYK", (2, 1), (0, 255, 0, 0)).save(tmp_path / "k.tif")
    assert read_rgb(tmp_path / "k.tif").tolist() == [[[255, 0, 255], [255, 0, 255]]]


def test_exif_orientation_is_recorded_not_applied(tmp_path):
    from bench.datasets.base import IMAGE_MODE_POLICY, read_rgb

    im = Image.fromarray(np.tile(np.arange(6, dtype=np.uint8)[None, :, None] * 40, (4, 1, 3)))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "rot.png", exif=exif)
    info: dict = {}
    rgb = read_rgb(tmp_path / "rot.png", info)
    assert rgb.shape == (4, 6, 3) and rgb[0, :, 0].tolist() == [0, 40, 80, 120, 160, 200]  # stored order
    assert info["exif_orientation"] == 6 and "ignored" in IMAGE_MODE_POLICY["exif_orientation"]
    assert FolderDataset(tmp_path).get("rot").meta["source_image"]["exif_orientation"] == 6
