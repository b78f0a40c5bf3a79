"""Segmenter registry, the ONNX backend (vs the same network in torch) and the mmseg backend."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bench.datasets.classes import COCO_MERGED_9, COCO_STUFF_171
from bench.errors import ConfigError, UnavailableError, UnknownNameError, WeightsError
from bench.runtime.refcache import RefCache
from bench.segmenters import make_segmenter, segment_cached, segmenter_names
from bench.segmenters.base import resolve_class_set, to_void

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_registry_names_and_errors() -> None:
    assert {"espnetv2", "onnx", "mmseg", "deeplabv3-r101-cityscapes", "deeplabv3-r101-coco-stuff164k"} <= \
        set(segmenter_names())
    with pytest.raises(UnknownNameError, match="espnetv2"):
        make_segmenter("segformer")
    with pytest.raises(ConfigError, match="colour"):
        make_segmenter("espnetv2", colour="red")
    seg = make_segmenter("espnetv2", scale=0.5, input_size="512x256", allow_random_weights=True)
    assert seg.class_set.num_classes == 19 and seg._net is None  # cheap: nothing loaded


def test_class_sets_and_void_mapping() -> None:
    assert resolve_class_set("cocostuff171") is COCO_STUFF_171
    assert resolve_class_set(9).num_classes == 9 and resolve_class_set("coco_merged9") is COCO_MERGED_9
    with pytest.raises(ConfigError):
        resolve_class_set("ade20k")
    assert to_void(np.array([-1, 0, 8, 9, 300]), 9).tolist() == [255, 0, 8, 255, 255]


class TinySeg(nn.Module):
    """Logits at half resolution, like real segmenters' output strides."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        torch.manual_seed(classes)
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, classes, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _export(net: nn.Module, path: Path, hw: tuple[int, int], dynamic: bool = False) -> None:
    axes = {"input": {0: "n", 2: "h", 3: "w"}} if dynamic else {"input": {0: "n"}}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net.eval(), torch.zeros(1, 3, *hw), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes=axes)


def _torch_reference(net: nn.Module, image: np.ndarray, size: tuple[int, int], classes: int) -> np.ndarray:
    """The documented protocol, written out with torch and PIL."""
    from PIL import Image

    resized = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR), np.float32) / 255.0
    x = torch.from_numpy((resized - np.array(MEAN, np.float32)) / np.array(STD, np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        logits = F.interpolate(net(x), size=(size[1], size[0]), mode="bilinear", align_corners=False)
    labels = logits.argmax(1)[0].numpy()
    labels = np.where(labels < classes, labels, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(labels).resize((image.shape[1], image.shape[0]), Image.NEAREST))


@pytest.mark.parametrize("class_set,outputs", [("cocostuff171", 172), ("coco_merged9", 9)])
def test_onnx_backend_reproduces_the_torch_network(tmp_path: Path, class_set: str, outputs: int) -> None:
    pytest.importorskip("onnx")  # exporting needs it; running only needs onnxruntime
    net = TinySeg(outputs)
    path = tmp_path / "tiny.onnx"
    _export(net, path, (64, 96))
    seg = make_segmenter("onnx", model=str(path), class_set=class_set, batch_size=2)
    assert seg.requirements()[-1].found
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (50, 70, 3), dtype=np.uint8), rng.integers(0, 256, (80, 40, 3), dtype=np.uint8)]
    got = seg.predict_batch(images)
    assert seg._net_size == (96, 64)  # taken from the model's fixed input shape
    for image, labels in zip(images, got):
        expected = _torch_reference(net, image, (96, 64), seg.class_set.num_classes)
        assert labels.shape == image.shape[:2]
        assert np.array_equal(labels, expected)
    desc = seg.describe()
    assert desc["weights_sha256"] and desc["class_set"] == class_set and seg.identity.startswith("onnx-tiny-model-rgb@")


def test_onnx_dynamic_input_runs_at_native_size_and_accepts_label_outputs(tmp_path: Path) -> None:
    pytest.importorskip("onnx")

    class ArgmaxSeg(TinySeg):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(self.body(x), size=x.shape[2:], mode="nearest").argmax(1)

    net = ArgmaxSeg(12)
    path = tmp_path / "labels.onnx"
    _export(net, path, (32, 32), dynamic=True)
    seg = make_segmenter("onnx", model=str(path), class_set=10)
    image = np.random.default_rng(1).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    labels = seg.predict(image)
    x = (torch.from_numpy(image.astype(np.float32) / 255.0) - torch.tensor(MEAN)) / torch.tensor(STD)
    with torch.no_grad():
        expected = net(x.permute(2, 0, 1)[None])[0].numpy()
    assert np.array_equal(labels, np.where(expected < 10, expected, 255).astype(np.uint8))


def test_onnx_missing_model_is_reported(tmp_path: Path) -> None:
    seg = make_segmenter("onnx", model=str(tmp_path / "nope.onnx"), class_set=9)
    assert not seg.requirements()[-1].found
    with pytest.raises(WeightsError, match="nope.onnx"):
        seg.predict(np.zeros((4, 4, 3), np.uint8))


def test_segment_cached_shares_originals_between_users(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    path = tmp_path / "tiny.onnx"
    _export(TinySeg(9), path, (32, 32))
    seg = make_segmenter("onnx", model=str(path), class_set="coco_merged9")
    cache = RefCache(persist=False)
    image = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    first = segment_cached(seg, image, cache)
    assert np.array_equal(segment_cached(seg, image, cache), first)
    assert cache.computes == 1 and cache.hits == 1 and np.array_equal(first, seg.predict(image))


# --------------------------------------------------------------------------- mmseg
HAVE_MMSEG = all(importlib.util.find_spec(m) is not None for m in ("mmseg", "mmcv", "mmengine"))

TINY_CONFIG = """
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_val=0, seg_pad_val=255),
    backbone=dict(type='MobileNetV2', widen_factor=0.25, strides=(1, 2, 2, 1, 1, 1, 1),
                  dilations=(1, 1, 1, 2, 2, 4, 4), out_indices=(1, 6), norm_cfg=norm_cfg),
    decode_head=dict(type='FCNHead', in_channels=80, in_index=1, channels=16, num_convs=1, concat_input=False,
                     dropout_ratio=0.0, num_classes=9, norm_cfg=norm_cfg, align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(), test_cfg=dict(mode='whole'))
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 48), keep_ratio=False),
                 dict(type='PackSegInputs')]
default_scope = 'mmseg'
"""


def test_mmseg_backend_unavailable_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.segmenters import mmseg_backend

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(mmseg_backend.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mmcv" else real_find_spec(name, *a))
    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY_CONFIG)
    seg = make_segmenter("mmseg", config=str(cfg), class_set=9, allow_random_weights=True)
    assert not seg.requirements()[0].found and "build_mmcv.sh" in seg.requirements()[0].detail
    with pytest.raises(UnavailableError, match="build_mmcv.sh"):
        seg.predict(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.skipif(not HAVE_MMSEG, reason="mmcv/mmsegmentation not installed: BENCH_WITH_MMSEG=1 bash "
                    "scripts/test.sh builds them (~15-25 min on 2 cores), or scripts/build_mmcv.sh")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_mmseg_backend_tiny_config_random_init_and_checkpoint(tmp_path: Path) -> None:
    from mmseg.apis import inference_model

    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY_CONFIG)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    rand = make_segmenter("mmseg", config=str(cfg), class_set="coco_merged9", allow_random_weights=True, device="cpu")
    assert rand.random_weights and rand.describe()["random_weights"]
    assert rand.predict(image).shape == image.shape[:2]
    model = rand.model()
    # Give BN statistics and weights non-trivial values, then save an mmengine-style checkpoint
    # whose meta holds numpy objects (what torch>=2.6 refuses with plain weights_only loading).
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
    ckpt = tmp_path / "tiny.pth"
    torch.save({"state_dict": model.state_dict(),
                "meta": {"dataset_meta": {"classes": COCO_MERGED_9.names}, "seed": np.int64(3),
                         "hist": np.arange(4.0)}}, ckpt)
    with pytest.raises(Exception):  # noqa: B017 (any loader error counts)  plain weights_only loading refuses the numpy objects
        torch.load(ckpt, map_location="cpu", weights_only=True)
    seg = make_segmenter("mmseg", config=str(cfg), checkpoint=str(ckpt), class_set="coco_merged9", device="cpu")
    assert not seg.random_weights
    labels = seg.predict(image)
    assert labels.shape == image.shape[:2] and labels.dtype == np.uint8 and labels.max() < 9
    # Same as mmseg's own inference on the BGR image with the same weights.
    expected = inference_model(seg.model(), np.ascontiguousarray(image[..., ::-1])).pred_sem_seg.data[0].numpy()
    assert np.array_equal(labels, expected.astype(np.uint8))
    assert seg.describe()["weights_sha256"] and seg.identity.startswith("mmseg-tiny-")
    # A checkpoint whose keys do not match is refused, listing them.
    state = dict(model.state_dict())
    state["decode_head.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    bad = make_segmenter("mmseg", config=str(cfg), checkpoint=str(tmp_path / "bad.pth"), class_set=9, device="cpu")
    with pytest.raises(WeightsError, match="decode_head.extra.weight"):
        bad.predict(image)
