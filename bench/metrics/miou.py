"""mIoU of reconstructions through a pretrained segmenter, against two references.

Each reconstruction is segmented (default: ESPNetv2 s=2.0, 1024×512 input, Cityscapes
19 trainIds — EdgeNets' published model, 66.4 val mIoU on real Cityscapes) and compared
with

* ``gt``: the sample's ground-truth labels, when the dataset has labels in the
  segmenter's class set (``sample.meta["class_set"]``, or the ``gt_class_set`` option);
* ``orig``: the same segmenter's labels of the ORIGINAL image (computed once per image
  through :mod:`bench.runtime.refcache`, never per codec or rate). Void (255) on the original
  is ignored.

Pixels whose reference is 255 are ignored. A predicted void (255) on a valid reference
pixel is a miss of that pixel's class (it enlarges the class's union), as in the
Cityscapes evaluation. The state holds per-class intersections and unions (int64, length
C) summed over images, so the dataset mIoU is

    IoU_c = Σ_images |pred=c ∧ ref=c| / Σ_images |pred=c ∨ ref=c|  (over valid ref pixels)
    mIoU  = mean of IoU_c over classes with a non-zero union,   in [0, 1]   (average="present")
    mIoU  = Σ_c IoU_c / C, IoU_c = 0 where the union is 0,       in [0, 1]   (average="all")

— dataset-level sums, not a mean of per-image IoUs.

The segmenter's own noise floor (``noise_floor=True``, the default): the original plus
±1 LSB noise (every value moved up or down by one level, seeded by the image content, so
the same image always gets the same noise; clipped at 0 and 255) is segmented once per
original (through the reference cache, keyed by the original) and scored against the
original's segmentation like a reconstruction. Its sums are accumulated with every row
(``inter_floor`` / ``union_floor``), so ``miou_orig_floor`` is the mIoU vs original of a
near-lossless "codec" over exactly the rate point's images: ``miou_orig`` cannot be
expected to rise above it (ESPNetv2 at 256×512 changes ~3 % of its labels under such
noise). ``average="all"`` is SQ-GAN's
convention (every class of the class set counts, an absent class scores 0); the
default ``"present"`` is the Cityscapes/mmseg one.

Per image (``miou_gt_img``, ``miou_orig_img``, ``miou_gt9_img``), whatever ``average``:
the image's own mean IoU over the classes present in EITHER map of that image (non-zero
union on its valid reference pixels), in [0, 1]. A reconstruction that segments exactly
like its reference scores 1, so ``iou_drop_orig`` = 1 − ``miou_orig_img`` is 0 for a
clean image; worst-image rankings use it. It is not the dataset metric (that one keeps
the protocol's averaging over dataset-level sums).

Ground truth in another class set: the reference ``gt`` is the ground truth in the
SEGMENTER's class set: the sample's labels when they are in it, else ``sample.alt_labels``
or a conversion of either (:data:`bench.datasets.classes.CONVERSIONS`: Cityscapes' 34
labelIds → 19 trainIds, COCO-Stuff raw 182 → 171). A 171-class COCO-Stuff segmenter is
also scored on Iwai et al.'s 9 merged classes (prediction and ground truth mapped to
``coco_merged9``): ``miou_gt9``, as in their Table 3.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any, get_args

import numpy as np

from bench.modes import MIoUAverage

from ..datasets.base import ClassSet
from ..datasets.classes import CLASS_SETS, CONVERSIONS, apply_lut
from ..errors import MetricError, MetricOptionError
from ..segmenters import Segmenter, extractor_id, make_segmenter, segment_cached
from .base import Metric, Pair, State

IGNORE = 255
REFERENCES = ("gt", "orig")

#: The default segmenter card (when neither the protocol nor --param miou.segmenter names
#: one): the strongest published ESPNetv2 (s=2.0 at 1024×512, set by its card).
DEFAULT_SEGMENTER = "espnetv2"

#: Extra ground-truth columns of a segmenter's class set: (key, coarser class set); the
#: prediction and the ground truth are both mapped through CONVERSIONS.
MERGED_VIEWS: dict[str, tuple[tuple[str, str], ...]] = {"cocostuff171": (("gt9", "coco_merged9"),)}


def confusion_matrix(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> np.ndarray:
    """C×(C+1) int64 counts of (reference class, predicted class) over pixels whose
    reference is a class (0..C-1; anything else, e.g. 255, is ignored). Column C counts
    predictions outside 0..C-1 (void)."""
    if pred.shape != ref.shape:
        raise MetricError(f"prediction {pred.shape} and reference {ref.shape} differ in size",
                          "segment at the reference's resolution")
    c = int(num_classes)
    ref = ref.astype(np.int64, copy=False).ravel()
    pred = pred.astype(np.int64, copy=False).ravel()
    valid = (ref >= 0) & (ref < c)
    p = pred[valid]
    p = np.where((p >= 0) & (p < c), p, c)
    return np.bincount(ref[valid] * (c + 1) + p, minlength=c * (c + 1)).reshape(c, c + 1)


def intersection_union(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (intersection, union) pixel counts, int64 arrays of length C."""
    cm = confusion_matrix(pred, ref, num_classes)
    inter = np.diag(cm[:, :num_classes]).copy()
    union = cm.sum(1) + cm[:, :num_classes].sum(0) - inter
    return inter, union


def iou_per_class(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    """IoU in [0, 1] per class; NaN where the union is 0 (class absent everywhere)."""
    inter, union = np.asarray(inter, np.float64), np.asarray(union, np.float64)
    out = np.full(inter.shape, np.nan)
    np.divide(inter, union, out=out, where=union > 0)
    return out


AVERAGES: tuple[str, ...] = get_args(MIoUAverage)


def mean_iou(inter: np.ndarray, union: np.ndarray, average: MIoUAverage = "present") -> float:
    """Mean IoU in [0, 1]. ``average="present"``: over classes with a non-zero union (NaN
    when there is none); ``"all"``: over every class, an absent class (union 0) scoring 0."""
    if average not in AVERAGES:
        raise MetricError(f"unknown mIoU average {average!r}", f"use one of {', '.join(AVERAGES)}")
    iou = iou_per_class(inter, union)
    if average == "all":
        return float(np.nan_to_num(iou, nan=0.0).mean()) if iou.size else math.nan
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else math.nan


#: Version of the noise recipe below: part of the cache id of the noisy segmentations.
NOISE_RECIPE = "lsb-noise-v1"


def lsb_noise(image: np.ndarray) -> np.ndarray:
    """``image`` (uint8) with every value moved by +1 or −1 (equal odds, clipped to 0..255),
    drawn from a generator seeded by the image's content: the same image always gets the
    same noise, whatever the run, codec or order."""
    arr = np.ascontiguousarray(image, dtype=np.uint8)
    seed = int.from_bytes(hashlib.sha256(arr.tobytes()).digest()[:8], "little")
    sign = np.random.default_rng(seed).integers(0, 2, arr.shape, dtype=np.int16) * 2 - 1
    return np.clip(arr.astype(np.int16) + sign, 0, 255).astype(np.uint8)


def _key(name: str) -> str:
    return name.replace(" ", "_")


class MIoU(Metric):
    """mIoU (in [0, 1]) of segmentations of reconstructions vs ground truth and vs the
    segmentation of the original.

    Options: ``segmenter`` (a segmenter card name, see ``segmenters/*.yaml``; default: the
    protocol's evaluation segmenter, else ``espnetv2``), ``segmenter_params`` (options that
    replace the card's params),
    ``gt_class_set`` (class set of ``sample.labels`` when samples do not state it in
    ``meta["class_set"]``), ``average`` ("present": mean over classes with a non-zero
    union, the default; "all": over every class, absent ones scoring 0), ``noise_floor``
    (default True: also score the original + ±1 LSB noise → ``miou_orig_floor``), ``refcache`` (a :class:`bench.runtime.refcache.RefCache`; default the
    process-wide one), plus ``weights_dir`` / ``allow_random_weights`` / ``device``, which
    are passed to the segmenter.
    """

    name = "miou"
    version = "1"
    higher_is_better = True
    unit = ""

    def __init__(self, *, segmenter: str | Segmenter | None = None, segmenter_params: dict[str, Any] | None = None,
                 gt_class_set: str | None = None, average: MIoUAverage = "present", noise_floor: bool = True,
                 refcache: Any = None, weights_dir: str | None = None,
                 allow_random_weights: bool = False, device: str | None = None) -> None:
        super().__init__(weights_dir=weights_dir, allow_random_weights=allow_random_weights, device=device)
        if average not in AVERAGES:  # options are checked before the segmenter is built
            raise MetricOptionError(f"unknown mIoU average {average!r}",
                                    f"use --param miou.average={' or '.join(AVERAGES)}")
        if not isinstance(noise_floor, bool):
            raise MetricOptionError(f"miou noise_floor {noise_floor!r} is not true or false",
                                    "write --param miou.noise_floor=false (or true)")
        if isinstance(segmenter, Segmenter):
            self.segmenter = segmenter
        else:
            if segmenter_params is not None and not isinstance(segmenter_params, dict):
                raise MetricOptionError(f"miou segmenter_params {segmenter_params!r} is not a mapping",
                                        "pass a dict of the segmenter's options (Python API / metric_params)")
            segmenter = segmenter or DEFAULT_SEGMENTER
            params = dict(segmenter_params or {})
            params.setdefault("weights_dir", weights_dir)
            params.setdefault("allow_random_weights", allow_random_weights)
            params.setdefault("device", device)
            self.segmenter = make_segmenter(str(segmenter), **params)
        self.gt_class_set = gt_class_set
        self.views = tuple((key, CLASS_SETS[target]) for key, target in MERGED_VIEWS.get(self.class_set.name, ()))
        self.average = average
        self.noise_floor = noise_floor
        self._refcache = refcache

    # ------------------------------------------------------------------ identity
    @property
    def class_set(self) -> ClassSet:
        return self.segmenter.class_set

    @property
    def num_classes(self) -> int:
        return self.class_set.num_classes

    def requirements(self) -> list[Any]:
        return self.segmenter.requirements()

    def describe(self) -> dict[str, Any]:
        self.random_weights = self.segmenter.random_weights
        out = super().describe()
        out.update({"segmenter": self.segmenter.describe(), "class_set": self.class_set.name,
                    "references": list(REFERENCES) + [key for key, _ in self.views],
                    "views": {key: cs.name for key, cs in self.views}, "ignore_index": IGNORE,
                    "per_image": "mean IoU over the classes present in either map of the image "
                                 "(1 = segments exactly like the reference), whatever the averaging",
                    "gt_class_set": self.gt_class_set, "average": self.average,
                    "noise_floor": (f"original + ±1 LSB noise ({NOISE_RECIPE}, seeded by content) vs original"
                                    if self.noise_floor else None),
                    "aggregation": "dataset-level sums of per-class intersections and unions; "
                                   + ("mIoU over classes with a non-zero union" if self.average == "present"
                                      else "mIoU over all classes, an absent class scoring 0")})
        return out

    # ------------------------------------------------------------------ protocol
    def init(self) -> State:
        c = self.num_classes
        state: State = {}
        for ref in REFERENCES:
            state[f"inter_{ref}"] = np.zeros(c, np.int64)
            state[f"union_{ref}"] = np.zeros(c, np.int64)
            state[f"images_{ref}"] = np.zeros((), np.int64)
        for key, cs in self.views:
            state[f"inter_{key}"] = np.zeros(cs.num_classes, np.int64)
            state[f"union_{key}"] = np.zeros(cs.num_classes, np.int64)
            state[f"images_{key}"] = np.zeros((), np.int64)
        if self.noise_floor:
            state["inter_floor"] = np.zeros(c, np.int64)
            state["union_floor"] = np.zeros(c, np.int64)
            state["images_floor"] = np.zeros((), np.int64)
        return state

    def segment_original(self, image: np.ndarray) -> np.ndarray:
        """The segmenter's labels of an original image, through the reference cache."""
        return segment_cached(self.segmenter, image, self._refcache)

    def segment_noisy_original(self, image: np.ndarray) -> np.ndarray:
        """The segmenter's labels of :func:`lsb_noise` (``image``), cached under the ORIGINAL's
        content (one extra forward per original, once, for every codec and rate)."""
        cache = self._refcache
        if cache is None:
            from bench.runtime.refcache import default_cache

            cache = default_cache()
        ident = f"{extractor_id(self.segmenter)}/{NOISE_RECIPE}"
        labels = cache.get_or_compute(image, ident, lambda: self.segmenter.predict(lsb_noise(image)))
        return np.asarray(labels, dtype=np.uint8)

    def ground_truth(self, sample: Any, class_set: str) -> np.ndarray | None:
        """The sample's ground truth in ``class_set`` (its labels, an ``alt_labels`` entry, or a
        conversion of either through CONVERSIONS), or None when it has none there."""
        if sample.labels is None:
            return None
        stated = sample.meta.get("class_set", self.gt_class_set)
        sources: dict[str, np.ndarray] = dict(getattr(sample, "alt_labels", None) or {})
        if stated is not None:
            sources[stated.name if isinstance(stated, ClassSet) else str(stated)] = sample.labels
        if class_set in sources:
            return sources[class_set]
        for source, labels in sources.items():
            lut = CONVERSIONS.get((source, class_set))
            if lut is not None:
                return apply_lut(labels, lut)
        return None

    def update(self, state: State, pair: Pair) -> dict[str, float]:
        return self.update_batch([state], [pair])[0]

    def update_batch(self, states: Sequence[State], pairs: Sequence[Pair]) -> list[dict[str, float]]:
        """Segment the reconstructions together (``predict_batch``), then accumulate each."""
        for pair in pairs:
            original, rec = pair.sample.image, pair.reconstruction
            if rec.shape != original.shape or rec.dtype != np.uint8:
                raise MetricError(f"reconstruction {rec.dtype} {rec.shape} vs original {original.dtype} {original.shape}",
                                  "the codec's decode must return a uint8 image of the original H×W×3")
        preds = self.segmenter.predict_batch([p.reconstruction for p in pairs])
        return [self._accumulate(state, pair, pred) for state, pair, pred in zip(states, pairs, preds)]

    def _accumulate(self, state: State, pair: Pair, pred: np.ndarray) -> dict[str, float]:
        original = pair.sample.image
        self.random_weights = self.segmenter.random_weights
        references = {"orig": self.segment_original(original)}
        if self.noise_floor and "inter_floor" in state:
            inter, union = intersection_union(self.segment_noisy_original(original), references["orig"],
                                              self.num_classes)
            state["inter_floor"] += inter
            state["union_floor"] += union
            state["images_floor"] += 1
        gt = self.ground_truth(pair.sample, self.class_set.name)
        if gt is not None:
            if gt.shape != original.shape[:2]:
                raise MetricError(f"labels {gt.shape} and image {original.shape[:2]} differ in size",
                                  "the dataset must resize labels with the image (nearest)")
            references["gt"] = gt
        scored = [(ref, pred, labels, self.num_classes) for ref, labels in references.items()]
        for key, cs in self.views:  # coarser class sets: prediction and ground truth both mapped
            view_gt = self.ground_truth(pair.sample, cs.name)
            if view_gt is not None and view_gt.shape == original.shape[:2]:
                scored.append((key, apply_lut(pred, CONVERSIONS[(self.class_set.name, cs.name)]), view_gt,
                               cs.num_classes))
        values: dict[str, float] = {}
        for ref, p, labels, classes in scored:
            inter, union = intersection_union(p, labels, classes)
            state[f"inter_{ref}"] += inter
            state[f"union_{ref}"] += union
            state[f"images_{ref}"] += 1
            # per image: the classes present in either map of THIS image, whatever self.average
            per_image = mean_iou(inter, union, "present") if union.any() else math.nan
            if not math.isnan(per_image):  # a reference that is void everywhere has no value
                values[f"miou_{ref}_img"] = per_image
        return values

    def compute(self, state: State) -> dict[str, float]:
        out: dict[str, float] = {}
        refs = [(ref, self.class_set) for ref in REFERENCES] + list(self.views)
        for ref, cs in refs:
            if f"images_{ref}" not in state or int(state[f"images_{ref}"]) == 0:
                if ref == "orig":
                    out["miou_orig"] = math.nan
                continue
            inter, union = state[f"inter_{ref}"], state[f"union_{ref}"]
            out[f"miou_{ref}"] = mean_iou(inter, union, self.average)
            if ref == "orig" and int(state.get("images_floor", 0)) > 0:  # the column beside miou_orig
                out["miou_orig_floor"] = mean_iou(state["inter_floor"], state["union_floor"], self.average)
            out[f"classes_{ref}"] = float(np.count_nonzero(union))
            for name, value in zip(cs.names, iou_per_class(inter, union)):
                if not math.isnan(value):
                    out[f"iou_{ref}/{_key(name)}"] = float(value)
        return out
