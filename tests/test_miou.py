"""mIoU metric: independent references (hand counts, cityscapesscripts), dataset-level
aggregation, the two references, and one segmentation per original."""

from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from bench.datasets.base import ClassSet, Sample
from bench.datasets.classes import (
    CITYSCAPES_19,
    CITYSCAPES_LABELID_TO_TRAINID,
    CITYSCAPES_TRAINID_TO_LABELID,
    COCO_MERGED_9,
)
from bench.errors import MetricError
from bench.metrics.base import Pair
from bench.metrics.miou import MIoU, confusion_matrix, intersection_union, lsb_noise, mean_iou
from bench.registry import catalog
from bench.runtime.refcache import RefCache
from bench.segmenters.base import Segmenter


class TableSegmenter(Segmenter):
    """Returns a preset label map per image content (for metric logic tests)."""

    name = "table"

    def __init__(self, class_set: ClassSet, table: dict[str, np.ndarray]) -> None:
        super().__init__()
        self._cs, self.table, self.calls = class_set, table, 0

    @property
    def class_set(self) -> ClassSet:
        return self._cs

    def _predict_many(self, images: list[np.ndarray]) -> list[np.ndarray]:
        self.calls += len(images)
        return [self.table[digest(im)] for im in images]


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def hand_iou(pred: np.ndarray, ref: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class intersection and union by boolean masks over valid reference pixels."""
    valid = ref != 255
    inter = np.array([np.sum((pred == k) & (ref == k) & valid) for k in range(c)])
    union = np.array([np.sum(((pred == k) | (ref == k)) & valid) for k in range(c)])
    return inter, union


def test_tiny_hand_computed_example() -> None:
    ref = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1], [255, 2, 0]], np.uint8)
    cm = confusion_matrix(pred, ref, 3)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0]]  # last column: predicted void
    inter, union = intersection_union(pred, ref, 3)
    assert inter.tolist() == [1, 1, 1]
    assert union.tolist() == [2, 3, 1]  # class 1: {(0,1),(0,2),(1,0)}; (1,2) is ignored
    assert mean_iou(inter, union) == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)


@pytest.mark.parametrize("c", [5, 19, 171])
def test_confusion_counts_equal_boolean_masks(c: int) -> None:
    rng = np.random.default_rng(c)
    ref = rng.integers(0, c, (40, 60)).astype(np.uint8)
    ref[rng.random(ref.shape) < 0.2] = 255
    pred = rng.integers(0, c, (40, 60)).astype(np.uint8)
    pred[rng.random(pred.shape) < 0.1] = 255
    inter, union = intersection_union(pred, ref, c)
    h_inter, h_union = hand_iou(pred, ref, c)
    assert np.array_equal(inter, h_inter) and np.array_equal(union, h_union)
    present = h_union > 0
    assert mean_iou(inter, union) == pytest.approx(np.mean(h_inter[present] / h_union[present]))


def _cityscapes_case(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(gt labelIds 0..33, prediction trainIds 0..18 or 255) pairs, predictions ~60 % right."""
    out = []
    for _ in range(n):
        gt_ids = rng.integers(0, 34, shape).astype(np.uint8)
        gt_train = CITYSCAPES_LABELID_TO_TRAINID[gt_ids]
        pred = np.where(rng.random(shape) < 0.6, gt_train, rng.integers(0, 19, shape)).astype(np.uint8)
        pred[rng.random(shape) < 0.05] = 255
        out.append((gt_ids, pred))
    return out


def test_matches_cityscapesscripts(tmp_path: Path) -> None:
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs
    from cityscapesscripts.helpers.labels import trainId2label

    args = SimpleNamespace(**vars(cs.args))
    args.evalInstLevelScore, args.evalPixelAccuracy, args.quiet = False, False, True
    conf = cs.generateMatrix(args)
    rng = np.random.default_rng(7)
    images = []
    for i, (gt_ids, pred) in enumerate(_cityscapes_case(rng, 3, (24, 40))):
        gt_file, pred_file = tmp_path / f"gt{i}_gtFine_labelIds.png", tmp_path / f"pred{i}.png"
        Image.fromarray(gt_ids).save(gt_file)
        # cityscapesscripts wants labelIds: trainId → labelId, void → 0 ("unlabeled").
        pred_label_ids = CITYSCAPES_TRAINID_TO_LABELID[pred]
        pred_label_ids[pred == 255] = 0
        Image.fromarray(pred_label_ids).save(pred_file)
        cs.evaluatePair(str(pred_file), str(gt_file), conf, {}, {}, args)
        images.append((gt_ids, pred))

    table, pairs = {}, []
    for i, (gt_ids, pred) in enumerate(images):
        img = np.full(gt_ids.shape + (3,), i, np.uint8)
        table[digest(img)] = pred
        labels = CITYSCAPES_LABELID_TO_TRAINID[gt_ids]
        pairs.append(Pair(Sample(f"im{i}", img, labels, meta={"class_set": "cityscapes19"}), img, 1))
    seg = TableSegmenter(CITYSCAPES_19, table)
    metric = MIoU(segmenter=seg, noise_floor=False, refcache=RefCache(persist=False))
    states = []
    for pair in pairs:
        state = metric.init()
        metric.update(state, pair)
        states.append(state)
    result = metric.compute(metric.merge_all(states))

    scores = {}
    for train_id in range(19):
        label = trainId2label[train_id]
        scores[label.name] = cs.getIouScoreForLabel(label.id, conf, args)
        assert result[f"iou_gt/{label.name.replace(' ', '_')}"] == pytest.approx(scores[label.name], abs=1e-12)
    assert result["miou_gt"] == pytest.approx(cs.getScoreAverage(scores, args), abs=1e-12)
    assert result["classes_gt"] == 19


def test_merge_of_per_image_states_is_one_pass_over_all_pixels() -> None:
    rng = np.random.default_rng(3)
    c, table, pairs, preds, refs = 6, {}, [], [], []
    for i in range(5):
        shape = (10 + 3 * i, 12 + i)  # images of different sizes and class mixes
        ref = rng.integers(0, 2 + i % 5, shape).astype(np.uint8)
        ref[rng.random(shape) < 0.1] = 255
        pred = np.where(rng.random(shape) < 0.5 + 0.1 * i, ref, rng.integers(0, c, shape)).astype(np.uint8)
        img = np.full(shape + (3,), i, np.uint8)
        table[digest(img)] = pred
        pairs.append(Pair(Sample(f"im{i}", img, ref, meta={"class_set": "classes6"}), img, 1))
        preds.append(pred.ravel())
        refs.append(ref.ravel())
    cs6 = ClassSet("classes6", tuple(f"k{k}" for k in range(c)))
    metric = MIoU(segmenter=TableSegmenter(cs6, table), noise_floor=False, refcache=RefCache(persist=False))
    states, per_image = [], []
    for pair in pairs:
        state = metric.init()
        per_image.append(metric.update(state, pair)["miou_gt_img"])
        states.append(state)
    random.Random(0).shuffle(states)  # merge order does not matter
    merged = metric.compute(metric.merge_all(states))
    inter, union = hand_iou(np.concatenate(preds), np.concatenate(refs), c)
    present = union > 0
    assert merged["miou_gt"] == pytest.approx(np.mean(inter[present] / union[present]), abs=1e-12)
    pairwise = metric.merge(metric.merge(states[0], states[1]), metric.merge_all(states[2:]))
    assert metric.compute(pairwise) == merged
    assert abs(merged["miou_gt"] - np.mean(per_image)) > 1e-3  # not a mean of per-image mIoUs


def test_references_and_class_set_gating() -> None:
    img = np.zeros((4, 6, 3), np.uint8)
    rec = img.copy()
    rec[0, 0] = 1
    labels_orig = np.array([[0] * 6, [1] * 6, [2] * 6, [255] * 6], np.uint8)
    labels_rec = labels_orig.copy()
    labels_rec[1, :3] = 0
    seg = TableSegmenter(COCO_MERGED_9, {digest(img): labels_orig, digest(rec): labels_rec})
    metric = MIoU(segmenter=seg, noise_floor=False, refcache=RefCache(persist=False))
    gt = np.full((4, 6), 2, np.uint8)
    # No stated class set → ground truth is not used.
    state = metric.init()
    values = metric.update(state, Pair(Sample("a", img, gt), rec, 1))
    assert set(values) == {"miou_orig_img"} and int(state["images_gt"]) == 0
    # 0: inter 6, union 9; 1: inter 3, union 6; 2: inter 6, union 6 (row 3 is void on the original).
    assert values["miou_orig_img"] == pytest.approx((6 / 9 + 3 / 6 + 1) / 3)
    # A different class set → still not used; the same one → used.
    metric.update(state, Pair(Sample("b", img, gt, meta={"class_set": "cityscapes19"}), rec, 1))
    assert int(state["images_gt"]) == 0
    values = metric.update(state, Pair(Sample("c", img, gt, meta={"class_set": COCO_MERGED_9}), rec, 1))
    # gt is class 2 everywhere; predicted 2 on 6 pixels, 0 on 9 and 1 on 3 (IoU 0 each), void on 6.
    assert values["miou_gt_img"] == pytest.approx((0 + 0 + 6 / 24) / 3)
    result = metric.compute(state)
    assert result["miou_orig"] == pytest.approx((18 / 27 + 9 / 18 + 1) / 3)
    assert result["classes_gt"] == 3 and result["iou_gt/water"] == pytest.approx(6 / 24)
    assert result["iou_gt/sky"] == 0.0 and "iou_gt/road" not in result
    assert math.isnan(metric.compute(metric.init())["miou_orig"])


def test_registered_metric_is_cheap_and_describes_the_protocol(tmp_path: Path) -> None:
    metric = catalog.make_metric("miou", weights_dir=str(tmp_path), allow_random_weights=True)
    assert isinstance(metric, MIoU) and metric.segmenter._net is None  # nothing loaded yet
    desc = metric.describe()
    seg = desc["segmenter"]
    assert seg["name"] == "espnetv2" and seg["scale"] == 2.0 and seg["input_size"] == "1024x512"
    assert desc["class_set"] == "cityscapes19" and desc["references"] == ["gt", "orig"]
    state = metric.init()
    assert state["inter_gt"].shape == (19,) and state["union_orig"].dtype == np.int64


def _small_espnet(tmp_path: Path) -> dict:
    """ESPNetv2 s=0.5 run at 256×128 (cheap): the real 512×256 weights when shared/ is
    there, else random ones — the counts below do not depend on the weights."""
    from conftest import SHARED

    path = SHARED / "weights" / "espnetv2" / "espnetv2_s_0.5_city_512x256.pth"
    return {"scale": 0.5, "input_size": "256x128", "weights": str(path if path.is_file() else tmp_path / "none.pth"),
            "allow_random_weights": True, "device": "cpu"}


def test_originals_are_segmented_once_for_two_codecs_three_rates(tmp_path: Path) -> None:
    from bench.codecs.pillow_codecs import JpegCodec, WebpCodec

    rng = np.random.default_rng(0)
    image = np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((16, 16, 1))).astype(np.uint8)  # 96×128 blocks
    cache = RefCache(tmp_path / "cache")
    metric = MIoU(segmenter_params=_small_espnet(tmp_path), refcache=cache)
    calls = {"n": 0}
    predict_batch = metric.segmenter.predict_batch

    def counting(images: list[np.ndarray]) -> list[np.ndarray]:  # predict() goes through it too
        calls["n"] += len(images)
        return predict_batch(images)

    metric.segmenter.predict_batch = counting  # type: ignore[method-assign]
    states = []
    for codec in (JpegCodec(), WebpCodec()):
        for rate in (10, 50, 90):
            rec = codec.decode(codec.encode(image, rate).parts)
            state = metric.init()
            values = metric.update(state, Pair(Sample("im0", image.copy()), rec, 1, codec.name, str(rate)))
            states.append(state)
            assert set(values) <= {"miou_orig_img"}  # no labels → no gt reference
    assert len(states) == 6
    # the original and its ±1 LSB noisy copy (the segmenter's noise floor) are segmented once each
    assert cache.computes == 2 and cache.misses == 2 and cache.hits == 10
    assert calls["n"] == 6 + 2  # every reconstruction, plus the original and its noisy copy once
    result = metric.compute(metric.merge_all(states))
    assert 0.0 <= result["miou_orig"] <= 1.0 and "miou_gt" not in result
    assert 0.0 <= result["miou_orig_floor"] <= 1.0
    assert int(metric.merge_all(states)["images_orig"]) == 6
    # A later run (new process, same cache folder) reads the originals' labels from disk.
    again = MIoU(segmenter=metric.segmenter, refcache=RefCache(tmp_path / "cache"))
    values = again.update(again.init(), Pair(Sample("im0", image), image, 1))
    assert again._refcache.computes == 0 and again._refcache.stats.disk_hits == 2
    if not metric.segmenter.random_weights:  # the real network is deterministic: perfect score
        assert values["miou_orig_img"] == 1.0


def test_average_all_counts_absent_classes_as_zero() -> None:
    # 4 classes; class 3 never appears. Hand counts: ref row-major [0 0 1 1 2 2], pred [0 1 1 1 2 0].
    ref = np.array([[0, 0, 1], [1, 2, 2]], np.uint8)
    pred = np.array([[0, 1, 1], [1, 2, 0]], np.uint8)
    cm = confusion_matrix(pred, ref, 4)
    assert cm.tolist() == [[1, 1, 0, 0, 0], [0, 2, 0, 0, 0], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    inter, union = intersection_union(pred, ref, 4)
    assert inter.tolist() == [1, 2, 1, 0] and union.tolist() == [3, 3, 2, 0]
    assert mean_iou(inter, union, "present") == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert mean_iou(inter, union, "all") == pytest.approx((1 / 3 + 2 / 3 + 1 / 2 + 0) / 4)
    with pytest.raises(MetricError):
        mean_iou(inter, union, "weighted")


def test_metric_average_option_reaches_the_dataset_value_and_identity() -> None:
    img = np.zeros((2, 3, 3), np.uint8)
    rec = img.copy()
    rec[0, 0] = 1
    labels_orig = np.array([[0, 0, 1], [1, 2, 2]], np.uint8)
    labels_rec = np.array([[0, 1, 1], [1, 2, 0]], np.uint8)
    seg = TableSegmenter(COCO_MERGED_9, {digest(img): labels_orig, digest(rec): labels_rec})
    results = {}
    for average in ("present", "all"):
        metric = MIoU(segmenter=seg, average=average, noise_floor=False, refcache=RefCache(persist=False))
        state = metric.init()
        metric.update(state, Pair(Sample("a", img), rec, 1))
        results[average] = metric.compute(state)["miou_orig"]
        assert metric.describe()["average"] == average
    assert results["present"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert results["all"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 9)  # 9 classes, 6 absent
    with pytest.raises(MetricError):
        MIoU(segmenter=seg, average="mean")


def test_lsb_noise_is_plus_or_minus_one_and_seeded_by_content() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    image[0, :5] = 0
    image[1, :5] = 255
    noisy = lsb_noise(image)
    diff = noisy.astype(int) - image.astype(int)
    inner = (image > 0) & (image < 255)
    assert set(np.unique(diff[inner])) == {-1, 1}
    assert 0.45 < np.mean(diff[inner] == 1) < 0.55
    assert np.all(np.abs(diff) <= 1) and noisy.dtype == np.uint8  # clipped at the ends, never wrapped
    assert np.array_equal(lsb_noise(image.copy()), noisy)  # same content → same noise
    other = image.copy()
    other[-1, -1, -1] ^= 1
    assert not np.array_equal(lsb_noise(other)[:10] - other[:10].astype(np.int16), diff[:10])


def test_noise_floor_hand_computed_and_segmented_once() -> None:
    img = np.full((2, 3, 3), 100, np.uint8)
    rec_a, rec_b = img.copy(), img.copy()
    rec_a[0, 0] = 1
    rec_b[0, 0] = 2
    labels_orig = np.array([[0, 0, 1], [1, 2, 2]], np.uint8)
    labels_noisy = np.array([[0, 1, 1], [1, 2, 2]], np.uint8)  # one pixel flips 0 → 1
    labels_rec = np.array([[0, 1, 1], [1, 2, 0]], np.uint8)
    seg = TableSegmenter(COCO_MERGED_9, {digest(img): labels_orig, digest(lsb_noise(img)): labels_noisy,
                                         digest(rec_a): labels_rec, digest(rec_b): labels_rec})
    metric = MIoU(segmenter=seg, refcache=RefCache(persist=False))
    states = [metric.init(), metric.init()]
    metric.update(states[0], Pair(Sample("a", img), rec_a, 1, "x", "1"))
    metric.update(states[1], Pair(Sample("a", img), rec_b, 1, "x", "2"))
    assert seg.calls == 2 + 2  # two reconstructions, the original and its noisy copy once each
    result = metric.compute(states[0])
    # floor: class 0 inter 1 union 2; class 1 inter 2 union 3; class 2 inter 2 union 2
    assert result["miou_orig_floor"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert result["miou_orig"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert list(result).index("miou_orig_floor") == list(result).index("miou_orig") + 1
    # summed over the rate point's images, like the other states
    assert metric.compute(metric.merge(states[0], states[0]))["miou_orig_floor"] == result["miou_orig_floor"]
    assert int(metric.merge(states[0], states[1])["images_floor"]) == 2
    off = MIoU(segmenter=seg, noise_floor=False, refcache=RefCache(persist=False))
    state = off.init()
    off.update(state, Pair(Sample("a", img), rec_a, 1))
    assert "miou_orig_floor" not in off.compute(state) and "inter_floor" not in state
    assert off.describe()["noise_floor"] is None and "LSB" in metric.describe()["noise_floor"]
    with pytest.raises(MetricError):
        MIoU(segmenter=seg, noise_floor="false")
