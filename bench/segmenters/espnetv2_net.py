"""The ESPNetv2 segmentation network of EdgeNets (Mehta et al.), module for module with the
official code's state_dict keys (``base_net.level1.conv …``); built by
:func:`bench.segmenters.espnetv2.build_network`, which keeps torch out of ``import bench``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from bench.errors import ConfigError

CITY_DEC_BASE = 16  # EdgeNets dec_feat_dict["city"]


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
