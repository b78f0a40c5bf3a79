"""Class sets and label lookup tables of the datasets.

Every table is a 256-entry uint8 lookup table (LUT): ``lut[raw_id]`` is the class id in
the target :class:`ClassSet`, 255 = ignore. Raw ids not listed map to 255.

Cityscapes (Cordts et al. 2016): the gtFine ``*_labelIds.png`` hold the 34 label ids
0..33 (license plate, id −1, never appears in the PNGs; as uint8 it would be 255).
Training/evaluation uses 19 "trainIds" (the official table of cityscapesscripts'
``helpers/labels.py``, restated here from the published facts).

COCO-Stuff (Caesar et al. 2018): the ``stuffthingmaps_trainval2017`` PNGs store
(COCO category id − 1), i.e. 0..181, and 255 = unlabeled. Ids 0..90 are the 91 COCO
thing ids of which 11 were never annotated; 91..181 are the 91 stuff classes. The 171
used classes in raw-id order form the standard "COCO-Stuff 171" evaluation set.
"""

from __future__ import annotations

import numpy as np

from .base import ClassSet, lookup_table

IGNORE = 255

# --------------------------------------------------------------------------- Cityscapes

#: The 34 Cityscapes label ids 0..33 by name (cityscapesscripts' ``labels``).
CITYSCAPES_LABEL_NAMES: tuple[str, ...] = (
    "unlabeled", "ego vehicle", "rectification border", "out of roi", "static", "dynamic", "ground",
    "road", "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge",
    "tunnel", "pole", "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky",
    "person", "rider", "car", "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle",
)

#: labelId → trainId for the 19 evaluated classes; every other labelId is 255.
CITYSCAPES_LABELID_TRAINID: tuple[tuple[int, int], ...] = (
    (7, 0), (8, 1), (11, 2), (12, 3), (13, 4), (17, 5), (19, 6), (20, 7), (21, 8), (22, 9),
    (23, 10), (24, 11), (25, 12), (26, 13), (27, 14), (28, 15), (31, 16), (32, 17), (33, 18),
)

CITYSCAPES_19 = ClassSet(
    "cityscapes19",
    tuple(CITYSCAPES_LABEL_NAMES[label_id] for label_id, _ in CITYSCAPES_LABELID_TRAINID),
)
CITYSCAPES_34 = ClassSet("cityscapes34", CITYSCAPES_LABEL_NAMES)

#: gtFine labelIds PNG value → trainId (0..18, 255 ignore).
CITYSCAPES_LABELID_TO_TRAINID = lookup_table(CITYSCAPES_LABELID_TRAINID)
#: gtFine labelIds PNG value → the 34 label ids themselves (0..33; anything else 255).
CITYSCAPES_LABELID_TO_LABELID34 = lookup_table((i, i) for i in range(34))
#: trainId → labelId (the inverse on the 19 classes; 255 stays 255).
CITYSCAPES_TRAINID_TO_LABELID = lookup_table((t, i) for i, t in CITYSCAPES_LABELID_TRAINID)
#: A ``*_labelTrainIds.png`` value → trainId (0..18 kept, anything else 255).
CITYSCAPES_TRAINID_CHECK = lookup_table((i, i) for i in range(19))

# --------------------------------------------------------------------------- COCO-Stuff

#: The 182 raw ids 0..181 of the stuffthingmaps (index = COCO category id − 1),
#: names as in COCO-Stuff's ``labels.txt``; the 11 unused thing ids are included.
COCO_RAW_NAMES: tuple[str, ...] = (
    # things 1..91 (raw 0..90)
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird",
    "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack",
    "umbrella", "shoe", "eye glasses", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "plate", "wine glass", "cup", "fork", "knife", "spoon", "bowl",
    "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut",
    "cake", "chair", "couch", "potted plant", "bed", "mirror", "dining table", "window", "desk",
    "toilet", "door", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave",
    "oven", "toaster", "sink", "refrigerator", "blender", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush", "hair brush",
    # stuff 92..182 (raw 91..181)
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter",
    "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble",
    "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit",
    "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves", "light", "mat",
    "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper", "pavement",
    "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river",
    "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow",
    "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent", "textile-other",
    "towel", "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel",
    "wall-stone", "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind",
    "window-other", "wood",
)

#: Raw ids (0-based) of the 11 COCO thing categories that were never annotated:
#: street sign, hat, shoe, eye glasses, plate, mirror, window, desk, door, blender, hair brush
#: (COCO ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91).
COCO_UNUSED_RAW_IDS: tuple[int, ...] = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)

#: The 171 used raw ids in increasing order; their position is the stuff171 class id.
COCO_USED_RAW_IDS: tuple[int, ...] = tuple(i for i in range(182) if i not in COCO_UNUSED_RAW_IDS)

COCO_STUFF_182 = ClassSet("cocostuff182", COCO_RAW_NAMES)
COCO_STUFF_171 = ClassSet("cocostuff171", tuple(COCO_RAW_NAMES[i] for i in COCO_USED_RAW_IDS))

#: stuffthingmaps value → raw id 0..181 (255 and the out-of-range values stay 255).
COCO_RAW_TO_RAW182 = lookup_table((i, i) for i in range(182))
#: stuffthingmaps value → contiguous stuff171 id; unused thing ids (never present) → 255.
COCO_RAW_TO_STUFF171 = lookup_table((raw, k) for k, raw in enumerate(COCO_USED_RAW_IDS))

# The 9 merged classes of Iwai et al. 2024 (seed spadegan_iwai_002, Sec. III-D): the 8
# classes of SFT-GAN (sky, plant, water, animal, building, mountain, grass, others) plus
# person and road, with grass merged into plant. The paper does not list which COCO-Stuff
# classes form each group, so this table is our choice, made as follows:
#  * Where a merged class matches a supercategory of COCO-Stuff's official label hierarchy
#    (Caesar et al., CocoStuffClasses.getClassHierarchy{Stuff,Things}), it takes exactly
#    that supercategory:
#      sky      = sky-stuff      {clouds, sky-other} + fog (see below)
#      plant    = plant-stuff    {grass, tree, bush, leaves, flower, branch, moss, straw,
#                                 plant-other}  (grass merged in, as the paper says)
#      water    = water-stuff    {river, sea, waterdrops, water-other}
#      animal   = animal-things  {bird, cat, dog, horse, sheep, cow, elephant, bear, zebra,
#                                 giraffe}; "teddy bear" is an indoor object → others
#      building = building-stuff {house, skyscraper, bridge, tent, roof, building-other};
#                                 wall-* are indoor-stuff in the hierarchy → others
#  * mountain: the hierarchy has no mountain group (mountain and hill sit in solid-stuff
#    next to rock, stone, wood); we take the two landform classes {mountain, hill} and keep
#    rock/stone/wood/solid-other in others.
#  * person: the COCO thing "person" only.
#  * road: the COCO-Stuff stuff class "road" only (literal reading; pavement, railroad and
#    other ground-stuff → others).
#  * Two deviations from the hierarchy, our choice, not the paper's (the nine classes are
#    texture classes for SPADE, so we group by appearance where the hierarchy disagrees):
#    - fog → sky (the hierarchy files it under water-stuff): fog is annotated on hazy sky
#      regions, e.g. the whole sky of val2017 000000000785, and has no water texture;
#    - potted plant (a furniture thing) → plant: its mask is mostly foliage.
#  * others = every other annotated class. 255 (unlabeled) stays 255 = ignore: it is not a
#    class; a codec that needs a class on every pixel may send unlabeled as "others".
COCO_MERGED_NAMES: tuple[str, ...] = (
    "sky", "plant", "water", "animal", "building", "mountain", "person", "road", "others",
)
COCO_MERGED_GROUPS: dict[str, tuple[str, ...]] = {
    "sky": ("clouds", "sky-other", "fog"),
    "plant": ("grass", "tree", "bush", "leaves", "flower", "branch", "moss", "straw", "plant-other",
              "potted plant"),
    "water": ("river", "sea", "waterdrops", "water-other"),
    "animal": ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"),
    "building": ("house", "skyscraper", "bridge", "tent", "roof", "building-other"),
    "mountain": ("mountain", "hill"),
    "person": ("person",),
    "road": ("road",),
}
COCO_MERGED_9 = ClassSet("coco_merged9", COCO_MERGED_NAMES)


def _merged_pairs() -> list[tuple[int, int]]:
    group_of = {name: COCO_MERGED_NAMES.index(group)
                for group, members in COCO_MERGED_GROUPS.items() for name in members}
    others = COCO_MERGED_NAMES.index("others")
    return [(raw, group_of.get(COCO_RAW_NAMES[raw], others)) for raw in COCO_USED_RAW_IDS]


#: stuffthingmaps value → merged9 id (0..8, 255 = unlabeled).
COCO_RAW_TO_MERGED9 = lookup_table(_merged_pairs())

#: Class sets by name, for lookups from a recorded protocol.
CLASS_SETS: dict[str, ClassSet] = {
    cs.name: cs for cs in (CITYSCAPES_19, CITYSCAPES_34, COCO_STUFF_171, COCO_STUFF_182, COCO_MERGED_9)
}


#: COCO-Stuff 171 id → merged9 id (a segmenter's 171-class prediction scored on Iwai's 9 classes).
COCO_STUFF171_TO_MERGED9 = lookup_table((k, int(COCO_RAW_TO_MERGED9[raw])) for k, raw in enumerate(COCO_USED_RAW_IDS))

#: Label maps that can be converted from one class set to another: (from, to) → LUT.
#: Used to score a segmenter against ground truth stored in another (finer) class set.
CONVERSIONS: dict[tuple[str, str], np.ndarray] = {
    ("cityscapes34", "cityscapes19"): CITYSCAPES_LABELID_TO_TRAINID,
    ("cocostuff182", "cocostuff171"): COCO_RAW_TO_STUFF171,
    ("cocostuff182", "coco_merged9"): COCO_RAW_TO_MERGED9,
    ("cocostuff171", "coco_merged9"): COCO_STUFF171_TO_MERGED9,
}


def apply_lut(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map a uint8 label map through a 256-entry LUT (returns a new uint8 array)."""
    return lut[labels.astype(np.uint8, copy=False)]


def _self_check() -> None:
    assert len(CITYSCAPES_LABEL_NAMES) == 34 and CITYSCAPES_19.num_classes == 19
    assert len(COCO_RAW_NAMES) == 182 and COCO_STUFF_171.num_classes == 171
    assert all(m in COCO_RAW_NAMES for ms in COCO_MERGED_GROUPS.values() for m in ms)


_self_check()
