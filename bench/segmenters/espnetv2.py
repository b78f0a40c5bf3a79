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
CITY_DEC_BASE = 16  # EdgeNets dec_feat_dict["city"]

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
    import torch
    from torch import nn
    from torch.nn import functional as F

    if scale not in WIDTHS:
        raise ConfigError(f"ESPNetv2 width s={scale} is not one of {sorted(WIDTHS)}",
                          "use scale 0.5, 1.0, 1.5 or 2.0")

    class ConvBnAct(nn.Module):  # keys conv / bn / act (EdgeNets espnet_utils.CBR)
        def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=False, groups=groups)
            self.bn = nn.BatchNorm2d(cout)
            self.act = nn.PReLU(cout)

        def forward(self, x):
            return self.act(self.bn(self.conv(x)))

    class ConvBn(nn.Module):  # keys conv / bn
        def __init__(self, cin: int, cout: int, k: int, groups: int = 1) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, 1, (k - 1) // 2, bias=False, groups=groups)
            self.bn = nn.BatchNorm2d(cout)

        def forward(self, x):
            return self.bn(self.conv(x))

    class BnAct(nn.Module):  # keys bn / act
        def __init__(self, c: int) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(c)
            self.act = nn.PReLU(c)

        def forward(self, x):
            return self.act(self.bn(x))

    class DilatedDW(nn.Module):  # key conv
        def __init__(self, c: int, stride: int, dilation: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, stride, dilation, dilation=dilation, bias=False, groups=c)

        def forward(self, x):
            return self.conv(x)

    class EESP(nn.Module):
        """Reduce (grouped 1×1) → 4 dilated depthwise branches with hierarchical sums → merge."""

        def __init__(self, cin: int, cout: int, stride: int, r_lim: int, k: int = 4) -> None:
            super().__init__()
            n = cout // k
            if n * k != cout:
                raise ConfigError(f"EESP width {cout} is not divisible by {k}", "use a published width")
            self.stride = stride
            self.proj_1x1 = ConvBnAct(cin, n, 1, groups=k)
            sizes = sorted(s if s <= r_lim else 3 for s in (3 + 2 * i for i in range(k)))
            self.spp_dw = nn.ModuleList(DilatedDW(n, stride, (s - 1) // 2) for s in sizes)
            self.conv_1x1_exp = ConvBn(cout, cout, 1, groups=k)
            self.br_after_cat = BnAct(cout)
            self.module_act = nn.PReLU(cout)

        def forward(self, x):
            reduced = self.proj_1x1(x)
            outs = [self.spp_dw[0](reduced)]
            for branch in self.spp_dw[1:]:
                outs.append(branch(reduced) + outs[-1])
            y = self.conv_1x1_exp(self.br_after_cat(torch.cat(outs, 1)))
            if self.stride == 2:  # the down-sampler adds its own activation
                return y
            if y.shape == x.shape:
                y = y + x
            return self.module_act(y)

    class DownSampler(nn.Module):
        """cat(avg-pool, strided EESP) + projection of the (repeatedly pooled) RGB input."""

        def __init__(self, cin: int, cout: int, r_lim: int) -> None:
            super().__init__()
            self.eesp = EESP(cin, cout - cin, 2, r_lim)
            self.avg = nn.AvgPool2d(3, stride=2, padding=1)
            self.inp_reinf = nn.Sequential(ConvBnAct(3, 3, 3), ConvBn(3, cout, 1))
            self.act = nn.PReLU(cout)

        def forward(self, x, rgb):
            pooled = self.avg(x)
            y = torch.cat([pooled, self.eesp(x)], 1)
            while True:
                rgb = F.avg_pool2d(rgb, 3, stride=2, padding=1)
                if rgb.shape[2] == pooled.shape[2]:
                    break
            return self.act(y + self.inp_reinf(rgb))

    class BaseNet(nn.Module):
        def __init__(self, c: Sequence[int]) -> None:
            super().__init__()
            self.level1 = ConvBnAct(3, c[0], 3, stride=2)
            self.level2_0 = DownSampler(c[0], c[1], r_lim=13)
            self.level3_0 = DownSampler(c[1], c[2], r_lim=11)
            self.level3 = nn.ModuleList(EESP(c[2], c[2], 1, r_lim=9) for _ in range(3))
            self.level4_0 = DownSampler(c[2], c[3], r_lim=9)
            self.level4 = nn.ModuleList(EESP(c[3], c[3], 1, r_lim=7) for _ in range(7))

    # decoder blocks: nn.Sequential-based (keys cbr.0/1/2, br.0/1)
    class SeqCBR(nn.Module):
        def __init__(self, cin: int, cout: int, k: int, groups: int = 1) -> None:
            super().__init__()
            self.cbr = nn.Sequential(nn.Conv2d(cin, cout, k, 1, (k - 1) // 2, bias=False, groups=groups),
                                     nn.BatchNorm2d(cout), nn.PReLU(cout))

        def forward(self, x):
            return self.cbr(x)

    class SeqBR(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.br = nn.Sequential(nn.BatchNorm2d(c), nn.PReLU(c))

        def forward(self, x):
            return self.br(x)

    class ChannelShuffle(nn.Module):
        def __init__(self, groups: int) -> None:
            super().__init__()
            self.groups = groups

        def forward(self, x):
            b, c, h, w = x.shape
            g = self.groups
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                # NHWC storage: shuffle the innermost axis, one copy, and stay channels_last
                y = x.permute(0, 2, 3, 1).reshape(b, h, w, g, c // g).transpose(3, 4).reshape(b, h, w, c)
                return y.permute(0, 3, 1, 2)
            return x.view(b, g, c // g, h, w).transpose(1, 2).reshape(b, c, h, w)

    class PyramidPool(nn.Module):
        """EfficientPyrPool: project, 5 depthwise convs at scales 2.0/1.5/1.0/0.5/0.1, merge."""

        SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)

        def __init__(self, cin: int, proj: int, cout: int, last: bool = False) -> None:
            super().__init__()
            n = len(self.SCALES)
            self.projection_layer = SeqCBR(cin, proj, 1)
            self.stages = nn.ModuleList(nn.Conv2d(proj, proj, 3, 1, 1, bias=False, groups=proj) for _ in range(n))
            self.merge_layer = nn.Sequential(SeqBR(proj * n), ChannelShuffle(n), SeqCBR(proj * n, proj, 3, groups=proj),
                                             nn.Conv2d(proj, cout, 1, bias=last))
            self.br = None if last else SeqBR(cout)

        def forward(self, x):
            x = self.projection_layer(x)
            h, w = x.shape[2:]
            outs = []
            for s, conv in zip(self.SCALES, self.stages):
                hs, ws = max(5, math.ceil(h * s)), max(5, math.ceil(w * s))
                if s > 1.0:
                    y = F.interpolate(x, (hs, ws), mode="bilinear", align_corners=True)
                    y = F.adaptive_avg_pool2d(conv(y), (h, w))
                elif s < 1.0:
                    y = conv(F.adaptive_avg_pool2d(x, (hs, ws)))
                    y = F.interpolate(y, (h, w), mode="bilinear", align_corners=True)
                else:
                    y = conv(x)
                outs.append(y)
            y = self.merge_layer(torch.cat(outs, 1))
            return y if self.br is None else self.br(y)

    class GatedPWConv(nn.Module):
        """EfficientPWConv: grouped 3×3 CBR gated by a sigmoid of the global average."""

        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.wt_layer = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.Sigmoid())
            self.expansion_layer = SeqCBR(cin, cout, 3, groups=math.gcd(cin, cout))

        def forward(self, x):
            return self.expansion_layer(x) * self.wt_layer(x)

    def bn_prelu(c: int) -> nn.Sequential:
        return nn.Sequential(nn.BatchNorm2d(c), nn.PReLU(c))

    class ESPNetv2Seg(nn.Module):
        def __init__(self, c: Sequence[int], classes: int) -> None:
            super().__init__()
            self.base_net = BaseNet(c)
            d = (4 * CITY_DEC_BASE, 3 * CITY_DEC_BASE, 2 * CITY_DEC_BASE, classes)
            proj = min(classes // 2, CITY_DEC_BASE)
            self.bu_dec_l1 = PyramidPool(c[3], proj, d[0])
            self.bu_dec_l2 = PyramidPool(d[0], proj, d[1])
            self.bu_dec_l3 = PyramidPool(d[1], proj, d[2])
            self.bu_dec_l4 = PyramidPool(d[2], proj, d[3], last=True)
            self.merge_enc_dec_l2 = GatedPWConv(c[2], d[0])
            self.merge_enc_dec_l3 = GatedPWConv(c[1], d[1])
            self.merge_enc_dec_l4 = GatedPWConv(c[0], d[2])
            self.bu_br_l2 = bn_prelu(d[0])
            self.bu_br_l3 = bn_prelu(d[1])
            self.bu_br_l4 = bn_prelu(d[2])

        def forward(self, x):
            """Logits N×classes×H×W at the input's H×W (normalised RGB in)."""
            b = self.base_net
            l1 = b.level1(x)
            l2 = b.level2_0(l1, x)
            l3 = b.level3_0(l2, x)
            for layer in b.level3:
                l3 = layer(l3)
            l4 = b.level4_0(l3, x)
            for layer in b.level4:
                l4 = layer(l4)
            y = self.bu_dec_l1(l4)
            for skip, merge, br, dec in ((l3, self.merge_enc_dec_l2, self.bu_br_l2, self.bu_dec_l2),
                                         (l2, self.merge_enc_dec_l3, self.bu_br_l3, self.bu_dec_l3),
                                         (l1, self.merge_enc_dec_l4, self.bu_br_l4, self.bu_dec_l4)):
                y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)
                y = dec(br(merge(skip) + y))
            return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=True)

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
