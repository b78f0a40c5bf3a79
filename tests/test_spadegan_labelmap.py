"""SPADE-GAN label-map compressor: class reduction, 16× downscaling, lossless
autoregressive coding (exact round trip, causal model, real code length ≈ cross-entropy)
and its rate on real COCO-Stuff maps against PNG (the pattern of the paper's Table 2)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.layers import MaskedConv2d
from PIL import Image

from bench.codecs.spadegan import labelmap as lm
from bench.codecs.spadegan.model import wavefronts
from bench.datasets.base import resize_labels
from bench.datasets.classes import COCO_RAW_TO_MERGED9
from bench.errors import ConfigError


def coco_maps(shared: Path) -> list[np.ndarray]:
    paths = sorted((shared / "data/coco/stuffthingmaps_trainval2017/val2017").glob("*.png"))
    assert len(paths) == 8
    return [np.asarray(Image.open(p)) for p in paths]


def blocky_map(h: int, w: int, classes: int, seed: int, void: bool = True) -> np.ndarray:
    """Piecewise-constant random map (blocks of 4×4), with some void pixels."""
    rng = np.random.default_rng(seed)
    lab = np.kron(rng.integers(0, classes, (h // 4 + 1, w // 4 + 1)), np.ones((4, 4), dtype=np.int64))[:h, :w]
    lab = lab.astype(np.uint8)
    if void:
        lab[rng.random((h, w)) < 0.05] = 255
    return lab


def test_wavefronts_cover_raster_once_and_respect_the_causal_mask():
    h, w = 7, 11
    mask = MaskedConv2d(1, 1, kernel_size=5, padding=2, mask_type="A").mask[0, 0].numpy()
    front = -np.ones((h, w), dtype=int)
    for t, (rows, cols) in enumerate(wavefronts(h, w)):
        assert rows == sorted(rows)
        for i, j in zip(rows, cols):
            assert front[i, j] == -1
            front[i, j] = t
    assert (front >= 0).all()
    for i in range(h):
        for j in range(w):
            for dy, dx in zip(*np.nonzero(mask)):
                y, x = i + dy - 2, j + dx - 2
                if 0 <= y < h and 0 <= x < w:
                    assert front[y, x] < front[i, j], (i, j, y, x)


def test_model_logits_only_see_previous_pixels():
    torch.manual_seed(0)
    model = lm.LabelMapModel(6, hidden=16).eval()
    sym = torch.as_tensor(blocky_map(9, 10, 5, seed=1, void=False).astype(np.int64))[None]
    base = model(sym)
    i, j = 4, 5
    changed = sym.clone()
    changed[0, i, j] = (changed[0, i, j] + 1) % 6
    after = model(changed)
    order = torch.arange(90).reshape(9, 10)
    before_mask = order <= i * 10 + j  # the pixel itself and all earlier ones
    assert torch.equal(base[0][:, before_mask], after[0][:, before_mask])
    assert not torch.equal(base[0][:, ~before_mask], after[0][:, ~before_mask])


def test_downscale_is_pil_nearest_and_pads_with_edges():
    lab = blocky_map(64, 96, 9, seed=2)
    assert np.array_equal(lm.downscale(lab), resize_labels(lab, 4, 6))
    odd = blocky_map(70, 90, 9, seed=3)
    small = lm.downscale(odd)
    assert small.shape == (5, 6)
    padded = np.pad(odd, ((0, 10), (0, 6)), mode="edge")
    assert np.array_equal(small, resize_labels(padded, 5, 6))


def test_class_conversion_and_symbols():
    lab = np.array([[0, 10, 18, 255]], dtype=np.uint8)  # road, sky, bicycle, void (trainIds)
    assert lm.convert_classes(lab, "cityscapes19", "cityscapes34").tolist() == [[7, 23, 33, 255]]
    raw = np.array([[0, 156, 147, 255, 17]], dtype=np.uint8)  # person, sky-other, river? (raw ids), void, dog
    assert np.array_equal(lm.convert_classes(raw, "cocostuff182", "coco_merged9"), COCO_RAW_TO_MERGED9[raw])
    with pytest.raises(ConfigError):
        lm.convert_classes(lab, "cityscapes19", "coco_merged9")
    sym = lm.to_symbols(np.array([[3, 255]], dtype=np.uint8), 9)
    assert sym.tolist() == [[3, 9]]
    assert lm.from_symbols(sym, 9).tolist() == [[3, 255]]
    with pytest.raises(ConfigError):
        lm.to_symbols(np.array([[9]], dtype=np.uint8), 9)


@pytest.mark.parametrize("classes", [9, 34])
def test_round_trip_is_exact(classes):
    torch.manual_seed(0)
    model = lm.LabelMapModel(classes + 1, hidden=16)
    sym = lm.to_symbols(blocky_map(13, 21, classes, seed=classes), classes)
    data = lm.encode(sym, model)
    assert np.array_equal(lm.decode(data, sym.shape, model), sym)
    # a different model cannot decode it (the pmfs matter)
    torch.manual_seed(1)
    other = lm.LabelMapModel(classes + 1, hidden=16)
    assert not np.array_equal(lm.decode(data, sym.shape, other), sym)


def test_code_length_matches_cross_entropy_and_training_lowers_it():
    torch.manual_seed(0)
    model = lm.LabelMapModel(10, hidden=32)
    maps = [lm.to_symbols(blocky_map(24, 32, 9, seed=s), 9) for s in range(6)]
    test = maps[0]

    def ideal_bits() -> float:
        with torch.no_grad():
            return float(model.rate_bits(torch.as_tensor(test)[None]))

    bits0, bytes0 = ideal_bits(), len(lm.encode(test, model))
    assert bits0 <= 8 * bytes0 <= 1.02 * bits0 + 64  # rANS ≈ ideal code length
    losses = lm.train_steps(model, maps, 60, lr=3e-3)
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5])
    bits1, bytes1 = ideal_bits(), len(lm.encode(test, model))
    assert bits1 < 0.8 * bits0 and bytes1 < 0.8 * bytes0
    assert bits1 <= 8 * bytes1 <= 1.02 * bits1 + 64
    assert np.array_equal(lm.decode(lm.encode(test, model), test.shape, model), test)


def test_png_bytes_decode_to_the_same_map():
    lab = blocky_map(20, 30, 9, seed=5)
    with Image.open(BytesIO(lm.png_bytes(lab))) as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), lab)


def test_coco_maps_reduced_and_downscaled_code_far_below_full_png(shared_dir):
    torch.manual_seed(0)
    model = lm.LabelMapModel(10)  # untrained: lossless, just not as small as a trained one
    ours, png_full = [], []
    for raw in coco_maps(shared_dir):
        h, w = raw.shape
        sym = lm.to_symbols(lm.downscale(lm.convert_classes(raw, "cocostuff182", "coco_merged9")), 9)
        data = lm.encode(sym, model)
        assert np.array_equal(lm.decode(data, sym.shape, model), sym)
        ours.append(lm.bpp(len(data), h, w))
        png_full.append(lm.bpp(len(lm.png_bytes(raw)), h, w))
    # ≤ log2(10) bits per 16×16 block = 0.013 bpp, against ~0.1-0.2 bpp for full-size PNG
    assert np.mean(ours) < 0.0145
    assert np.mean(ours) < np.mean(png_full) / 5


def test_rate_table_pattern_at_1_16(shared_dir):
    maps = coco_maps(shared_dir)[:2]
    rows = lm.rate_table(maps, {"cocostuff182": ("cocostuff182", "cocostuff182"),
                                "coco_merged9": ("cocostuff182", "coco_merged9")}, sizes=("1/16",))
    by = {(r.classes, r.coder): r for r in rows}
    assert len(rows) == 4 and all(r.size == "1/16" for r in rows)
    assert by["coco_merged9", "png"].bpp < by["cocostuff182", "png"].bpp
    assert by["coco_merged9", "autoregressive"].model == "untrained"
    expected = np.mean([lm.bpp(len(lm.png_bytes(lm.downscale(m))), *m.shape) for m in maps])
    assert by["cocostuff182", "png"].bpp == pytest.approx(expected)
