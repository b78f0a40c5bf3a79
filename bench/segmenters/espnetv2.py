"""ESPNetv2 semantic segmentation (Mehta et al., CVPR 2019) with the EdgeNets Cityscapes weights.

A clean re-implementation of EdgeNets' ``ESPNetv2Segmentation`` (dataset "city", 20
outputs = 19 Cityscapes trainIds + background) whose ``state_dict`` keys match the
published files exactly, so they load with strict key matching. Protocol (EdgeNets'
``test_segmentation.py``):

1. PIL bilinear resize of the RGB image to the weights' resolution (1024×512 or 512×256);
2. scale to [0, 1], normalise with ImageNet mean (0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225);
3. network logits, bilinearly upsampled (align_corners=True) to the network input size;
4. argmax; output 19 (background) → 255 (void);
5. PIL nearest resize of the label map back to the image's H×W.

Published class-wise val mIoU (EdgeNets model zoo): 1024×512 s=0.5 53.9, 1.0 60.1,
1.5 63.8, 2.0 66.4; 512×256 s=0.5 47.3, 1.0 52.2, 1.5 54.6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtime import weights as W
from bench.runtime.devices import resolve_device

from ..codecs.base import Requirement
from ..datasets.base import ClassSet
from ..datasets.classes import CITYSCAPES_19
from ..errors import ConfigError, WeightsError
from .base import Segmenter, parse_size, resize_nearest, resize_rgb, to_void

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Output widths of level1..level4 per width multiplier ``s``.
WIDTHS: dict[float, tuple[int, int, int, int]] = {
    0.5: (16, 32, 64, 128),
    1.0: (32, 64, 128, 256),
    1.5: (32, 96, 192, 384),
    2.0: (32, 128, 256, 512),
}
CITY_OUTPUTS = 20  # 19 trainIds + background (→ void)

#: sha256 prefixes of the published files (EdgeNets @ 2b232d3f model_zoo/espnetv2).
KNOWN_WEIGHTS: dict[tuple[float, tuple[int, int]], str] = {
    (0.5, (1024, 512)): "9412a86a30f13754",
    (0.5, (512, 256)): "63e398dec148f63c",
    (1.0, (1024, 512)): "0918c833fed889e3",
    (1.0, (512, 256)): "002121eee40c31c8",
    (1.5, (1024, 512)): "0dbbda9126583d62",
    (1.5, (512, 256)): "711c76f0f8146429",
    (2.0, (1024, 512)): "a72d59699801c7ce",
}
SOURCE = "https://github.com/sacmehta/EdgeNets/tree/master/model/segmentation/model_zoo/espnetv2"


def weight_spec(scale: float, size: tuple[int, int]) -> W.WeightSpec:
    """The :class:`WeightSpec` of the published file for width ``scale`` at ``size`` (W, H)."""
    fname = f"espnetv2_s_{scale:.1f}_city_{size[0]}x{size[1]}.pth"
    return W.WeightSpec(name="ESPNetv2 Cityscapes", filename=fname, sha256=KNOWN_WEIGHTS.get((scale, size)),
                        env="BENCH_ESPNETV2_WEIGHTS", source=SOURCE)


# ---------------------------------------------------------------------------- network
def build_network(scale: float = 2.0, num_outputs: int = CITY_OUTPUTS) -> Any:
    """The ESPNetv2 segmentation network (a ``torch.nn.Module``) for width ``scale``."""
    if scale not in WIDTHS:
        raise ConfigError(f"ESPNetv2 width s={scale} is not one of {sorted(WIDTHS)}",
                          "use scale 0.5, 1.0, 1.5 or 2.0")

    from bench.segmenters.espnetv2_net import ESPNetv2Seg

    return ESPNetv2Seg(WIDTHS[scale], num_outputs)


def random_init(net: Any, seed: int) -> None:
    """Seeded random weights (EdgeNets' scheme: Kaiming-normal fan-out convs, BN 1/0)."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)


def unwrap_checkpoint(obj: dict[str, Any]) -> dict[str, Any]:
    """A plain state_dict from a (possibly wrapped / DataParallel) checkpoint dict."""
    for key in ("state_dict", "model", "model_state_dict"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
            obj = inner
            break
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_network(path: Path | str, scale: float) -> Any:
    """Build the network for ``scale`` and load ``path`` strictly (keys and shapes).

    Raises :class:`WeightsError` listing missing / unexpected keys or mismatched shapes.
    """
    net = build_network(scale)
    state = unwrap_checkpoint(W.load_state_dict(path))
    own = net.state_dict()
    W.check_keys(set(own), set(state), f"ESPNetv2 s={scale} from {path}")
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
           if tuple(state[k].shape) != tuple(v.shape)]
    if bad:
        raise WeightsError(
            f"ESPNetv2 s={scale} from {path}: {len(bad)} tensors have the wrong shape "
            f"(file vs model): {'; '.join(bad[:6])}" + (f" … (+{len(bad) - 6})" if len(bad) > 6 else ""),
            "the file is for another width multiplier: pass the matching scale",
        )
    net.load_state_dict(state, strict=True)
    return net.eval()


def fold_batchnorm(net: Any) -> int:
    """Fold every BatchNorm that directly follows a convolution (the ``conv``/``bn`` pairs of
    CBR and CB blocks) into that convolution, in place; returns the number folded.

    Uses :func:`torch.nn.utils.fusion.fuse_conv_bn_eval` (eval-mode statistics); the
    logits change only by float32 rounding (~1e-5). The folded network has no ``bn`` keys,
    so load weights before folding."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for module in net.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(conv.eval(), bn.eval())
            module.bn = nn.Identity()
            folded += 1
    return folded


# ---------------------------------------------------------------------------- segmenter
class ESPNetv2Segmenter(Segmenter):
    """ESPNetv2 Cityscapes segmenter: 19 trainIds (``cityscapes19``), 255 = void.

    ``scale``: width multiplier 0.5 / 1.0 / 1.5 / 2.0. ``input_size``: the network input,
    "1024x512" or "512x256" (W×H; also picks the published file). ``weights``: explicit
    file (else ``$BENCH_ESPNETV2_WEIGHTS``, ``weights_dir``, ``$BENCH_WEIGHTS_DIR``,
    torch hub cache). ``check_hash``: compare with the published sha256 (turn off for
    your own re-trained file). ``batch_size``: images per forward pass (None: 1 on CPU,
    where larger batches of 1024×512 inputs run slower per image, 4 on CUDA). ``optimize``:
    fold BatchNorm into the preceding convolutions and use channels_last memory on CPU (~1.1×
    on CPU; logits differ by float rounding only, and the identity says "-fused");
    False runs the network exactly as loaded. ``seed``: random init in random-weights mode.
    """

    name = "espnetv2"
    version = "1"

    def __init__(self, *, scale: float = 2.0, input_size: str | Sequence[int] = "1024x512",
                 weights: str | None = None, check_hash: bool = True, batch_size: int | None = None, seed: int = 0,
                 optimize: bool = True,
                 weights_dir: str | None = None, allow_random_weights: bool = False,
                 device: str | None = None) -> None:
        super().__init__(weights_dir=weights_dir, allow_random_weights=allow_random_weights, device=device)
        self.scale = float(scale)
        if self.scale not in WIDTHS:
            raise ConfigError(f"ESPNetv2 width s={scale} is not one of {sorted(WIDTHS)}",
                              "use scale 0.5, 1.0, 1.5 or 2.0")
        self.input_size = parse_size(input_size) or (1024, 512)
        if weights is None and (self.scale, self.input_size) not in KNOWN_WEIGHTS:
            known = ", ".join(f"s={s} {w}x{h}" for s, (w, h) in KNOWN_WEIGHTS)
            raise ConfigError(f"no published ESPNetv2 weights for s={self.scale} at "
                              f"{self.input_size[0]}x{self.input_size[1]}",
                              f"use one of: {known}; or pass weights=PATH")
        self.spec = weight_spec(self.scale, self.input_size)
        self.weights = weights
        self.check_hash = check_hash
        self.batch_size = None if batch_size is None else max(1, int(batch_size))
        self.optimize = bool(optimize)
        self.seed = int(seed)
        self._net: Any = None
        self._random = False

    # -------------------------------------------------------------- identity
    @property
    def class_set(self) -> ClassSet:
        return CITYSCAPES_19

    def _resolve(self, fetch: bool = True) -> Path | None:
        """The verified weights file (downloaded when missing and ``fetch``), None in
        random-weights mode; raises otherwise."""
        return W.resolve_or_random(self.spec, self.weights, self.weights_dir, allow_random=self.allow_random_weights,
                                   check_hash=self.check_hash, fetch=fetch)

    @property
    def random_weights(self) -> bool:
        if self._net is not None:
            return self._random
        try:
            return self._resolve() is None
        except WeightsError:
            return False

    def weights_sha256(self) -> str | None:
        """Full sha256 of the weights file in use (None with random weights or if missing)."""
        try:
            path = self._resolve()
        except WeightsError:
            return None
        return W.sha256_file(path) if path else None

    def describe(self) -> dict[str, Any]:
        w, h = self.input_size
        out = super().describe()
        out.update({
            "scale": self.scale,
            "input_size": f"{w}x{h}",
            "weights": self.spec.filename if self.weights is None else Path(self.weights).name,
            "weights_sha256": self.weights_sha256(),
            "preprocess": f"PIL bilinear resize to {w}x{h}, /255, ImageNet mean/std",
            "postprocess": "logits bilinear (align_corners=True) to net input, argmax, "
                           "class 19 -> 255, PIL nearest resize to image size",
            "inference": "conv+BN folded, channels_last on CPU" if self.optimize else "as loaded",
        })
        if out.get("random_weights"):
            out["seed"] = self.seed
        return out

    @property
    def identity(self) -> str:
        sha = self.weights_sha256()
        tag = sha[:12] if sha else f"random{self.seed}"
        fused = "-fused" if self.optimize else ""
        return f"espnetv2-s{self.scale}-{self.input_size[0]}x{self.input_size[1]}{fused}@{tag}"

    def requirements(self) -> list[Requirement]:
        try:
            path = self._resolve(fetch=False)  # reporting never downloads
        except WeightsError as err:
            return [Requirement("weights", self.spec.filename, False, str(err))]
        detail = str(path) if path else "missing: random weights (allow_random_weights)"
        return [Requirement("weights", self.spec.filename, True, detail)]

    # -------------------------------------------------------------- network
    def network(self) -> Any:
        """The loaded ``torch.nn.Module`` (built on first use)."""
        if self._net is None:
            import torch

            path = self._resolve()
            if path is None:
                net = build_network(self.scale)
                random_init(net, self.seed)
                net.eval()
                self._random = True
            else:
                net = load_network(path, self.scale)
            device = torch.device(resolve_device(self.device))
            if self.optimize:
                fold_batchnorm(net)
                if device.type == "cpu":
                    net = net.to(memory_format=torch.channels_last)
            self._net = net.to(device)
        return self._net

    def logits(self, images: Sequence[np.ndarray]) -> Any:
        """Logits N×20×h×w (torch, at the network input size) of uint8 RGB images."""
        import torch

        net = self.network()
        device = next(net.parameters()).device
        batch = np.stack([resize_rgb(im, self.input_size) for im in images]).astype(np.float32) / 255.0
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        with torch.inference_mode():
            return net((x - mean) / std)

    def _predict_many(self, images: list[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        step = self.batch_size or (1 if next(self.network().parameters()).device.type == "cpu" else 4)
        for i in range(0, len(images), step):
            chunk = images[i:i + step]
            ids = self.logits(chunk).argmax(1).to("cpu").numpy()
            for image, lab in zip(chunk, ids):
                out.append(resize_nearest(to_void(lab, CITYSCAPES_19.num_classes), *image.shape[:2]))
        return out
