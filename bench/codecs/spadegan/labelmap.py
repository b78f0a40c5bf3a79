"""Label-map compression of the SPADE-GAN codec (Iwai et al. 2024, Sec. III-D).

Three strategies, each usable alone (for the paper's Table 2):

1. class reduction: :func:`convert_classes` maps a label map between class sets
   (COCO-Stuff 182/171 → the 9 merged classes ``coco_merged9``; Cityscapes trainIds
   ``cityscapes19`` ↔ labelIds ``cityscapes34``), through the tables of
   :mod:`bench.datasets.classes`;
2. 16× nearest downscaling (:func:`downscale`);
3. lossless coding with an autoregressive model (:class:`LabelMapModel`): a 5×5 masked
   convolution (type A: only pixels before the current one in raster order) on the one-hot
   map, then three 1×1 convolutions → a categorical pmf per pixel, driving compressai's
   rANS coder through :mod:`bench.codecs.entropy`.

Symbols: class ids 0..C−1 and the void label 255 as symbol C (alphabet C+1), so any map
of the class set round-trips exactly. Rates are in bits per pixel of the FULL-resolution
image (bpp = 8·bytes / (H·W)), as in the paper.

Determinism: encoder and decoder run the very same computation — raster order batched
into independent wavefronts (:func:`.model.wavefronts`), each pixel's logits from a 5×5
window of the map decoded so far (zeros elsewhere, :meth:`LabelMapModel.window_logits`),
same batches in the same order — so the pmfs and hence their integer CDFs
(:func:`bench.codecs.entropy.pmf_to_cdf`) are identical on both sides.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.layers import MaskedConv2d
from PIL import Image

from bench.codecs import entropy

from ...datasets import classes as cls
from ...datasets.base import lookup_table
from ...errors import ConfigError
from .model import single_thread, wavefronts, windows

VOID = 255
FACTOR = 16
KERNEL = 5

#: Label alphabets: class set name → number of classes (void comes on top).
NUM_CLASSES: dict[str, int] = {name: cs.num_classes for name, cs in cls.CLASS_SETS.items()}


def _compose(*luts: np.ndarray) -> np.ndarray:
    out = np.arange(256, dtype=np.uint8)
    for lut in luts:
        out = lut[out]
    return out


_STUFF171_TO_RAW = lookup_table((k, raw) for k, raw in enumerate(cls.COCO_USED_RAW_IDS))
#: (source, target) class set → 256-entry LUT; 255 always stays 255.
CONVERSIONS: dict[tuple[str, str], np.ndarray] = {
    ("cocostuff182", "coco_merged9"): cls.COCO_RAW_TO_MERGED9,
    ("cocostuff171", "coco_merged9"): _compose(_STUFF171_TO_RAW, cls.COCO_RAW_TO_MERGED9),
    ("cocostuff171", "cocostuff182"): _STUFF171_TO_RAW,
    ("cityscapes19", "cityscapes34"): cls.CITYSCAPES_TRAINID_TO_LABELID,
    ("cityscapes34", "cityscapes19"): cls.CITYSCAPES_LABELID_TO_TRAINID,
}


def convert_classes(labels: np.ndarray, source: str, target: str) -> np.ndarray:
    """Class reduction / conversion of an H×W uint8 label map (255 = void stays 255)."""
    if source == target:
        return np.asarray(labels, dtype=np.uint8)
    lut = CONVERSIONS.get((source, target))
    if lut is None:
        known = ", ".join(f"{a}→{b}" for a, b in CONVERSIONS)
        raise ConfigError(f"no conversion of label class set {source!r} to {target!r}",
                          f"give labels of class set {target!r} (known conversions: {known})")
    return cls.apply_lut(labels, lut)


def to_symbols(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """uint8 labels (0..C−1, 255) → int64 symbols (0..C, void = C); other values raise."""
    lab = np.asarray(labels)
    bad = (lab >= num_classes) & (lab != VOID)
    if bad.any():
        raise ConfigError(f"label map holds ids {sorted(np.unique(lab[bad]).tolist())[:8]} outside "
                          f"0..{num_classes - 1} and 255", "convert the labels to the model's class set")
    sym = lab.astype(np.int64)
    sym[lab == VOID] = num_classes
    return sym


def from_symbols(symbols: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse of :func:`to_symbols`."""
    lab = np.asarray(symbols).astype(np.uint8)
    lab[np.asarray(symbols) == num_classes] = VOID
    return lab


def pad_to_multiple(labels: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate an H×W map on the bottom/right up to multiples of ``multiple``."""
    h, w = labels.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    return np.pad(labels, ((0, ph), (0, pw)), mode="edge") if ph or pw else labels


def downscale(labels: np.ndarray, factor: int = FACTOR) -> np.ndarray:
    """Nearest-neighbour downscaling by ``factor``: the map is padded (edge) to multiples
    of ``factor`` and pixel ``(f·i + f/2, f·j + f/2)`` is taken — the pixel PIL's NEAREST
    resize picks for an exact factor."""
    lab = pad_to_multiple(np.asarray(labels), factor)
    return np.ascontiguousarray(lab[factor // 2::factor, factor // 2::factor])


# --------------------------------------------------------------------------- the model


class LabelMapModel(nn.Module):
    """Autoregressive label-map compressor M: 5×5 masked conv + three 1×1 convs."""

    def __init__(self, num_symbols: int, hidden: int = 64) -> None:
        super().__init__()
        self.num_symbols = int(num_symbols)
        self.masked = MaskedConv2d(num_symbols, hidden, kernel_size=KERNEL, padding=KERNEL // 2, mask_type="A")
        self.head = nn.Sequential(
            nn.LeakyReLU(0.2), nn.Conv2d(hidden, hidden, 1),
            nn.LeakyReLU(0.2), nn.Conv2d(hidden, hidden, 1),
            nn.LeakyReLU(0.2), nn.Conv2d(hidden, num_symbols, 1),
        )

    def one_hot(self, symbols: torch.Tensor) -> torch.Tensor:
        return F.one_hot(symbols.long(), self.num_symbols).permute(0, 3, 1, 2).float()

    def forward(self, symbols: torch.Tensor) -> torch.Tensor:
        """B×H×W symbols → B×S×H×W logits (all pixels at once; for training)."""
        return self.head(self.masked(self.one_hot(symbols)))

    def rate_bits(self, symbols: torch.Tensor) -> torch.Tensor:
        """Cross-entropy R_seg in bits (summed over the batch): the ideal code length."""
        logits = self(symbols)
        return F.cross_entropy(logits, symbols.long(), reduction="sum") / np.log(2.0)

    def window_logits(self, window: torch.Tensor) -> torch.Tensor:
        """Logits n×S of the centres of n×S×5×5 one-hot windows (future pixels are masked)."""
        feat = F.conv2d(window, self.masked.weight * self.masked.mask, self.masked.bias)
        return self.head(feat).reshape(window.shape[0], -1)


def _pmf(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.double(), dim=-1).numpy()


@torch.no_grad()
def _serial_pmfs(model: LabelMapModel, symbols: np.ndarray | None, shape: tuple[int, int],
                 decoder: entropy.CategoricalDecoder | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Code the map front by front (:func:`.model.wavefronts`): the pmfs of a front come
    from the map decoded so far (zeros elsewhere), then its symbols are taken (encoder:
    known; decoder: decoded with those pmfs). Returns the map, and the symbols and pmfs in
    coding order."""
    h, w = shape
    p = KERNEL // 2
    s = model.num_symbols
    buf = torch.zeros(1, s, h + 2 * p, w + 2 * p)
    out = np.zeros((h, w), dtype=np.int64)
    order_sym, order_pmf = [], []
    model.eval()
    with single_thread():
        for rows, cols in wavefronts(h, w):
            pmf = _pmf(model.window_logits(windows(buf, rows, cols, KERNEL)))
            if decoder is not None:
                sym = decoder.decode(pmf)
            else:
                sym = symbols[rows, cols]  # type: ignore[index]  # symbols is given exactly when decoder is None (encoding)
            out[rows, cols] = sym
            buf[0, torch.as_tensor(sym), torch.as_tensor(rows) + p, torch.as_tensor(cols) + p] = 1.0
            order_sym.append(np.asarray(sym, dtype=np.int64))
            order_pmf.append(pmf)
    return out, np.concatenate(order_sym), np.concatenate(order_pmf)


def encode(symbols: np.ndarray, model: LabelMapModel) -> bytes:
    """Losslessly code an h×w symbol map (ints in [0, S)) with the autoregressive model."""
    sym = np.asarray(symbols, dtype=np.int64)
    if sym.ndim != 2 or sym.size == 0:
        raise ValueError(f"expected a non-empty 2-D symbol map, got shape {sym.shape}")
    if sym.min() < 0 or sym.max() >= model.num_symbols:
        raise ValueError(f"symbols must lie in [0, {model.num_symbols}), got [{sym.min()}, {sym.max()}]")
    _, order, pmfs = _serial_pmfs(model, sym, sym.shape)
    return entropy.encode_categorical(order, pmfs)


def decode(data: bytes, shape: tuple[int, int], model: LabelMapModel) -> np.ndarray:
    """Inverse of :func:`encode`: the h×w int64 symbol map."""
    out, _, _ = _serial_pmfs(model, None, shape, entropy.CategoricalDecoder(data))
    return out


def png_bytes(labels: np.ndarray) -> bytes:
    """The map as an 8-bit grayscale PNG (PIL, optimize=True)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(labels, dtype=np.uint8)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def bpp(n_bytes: int, height: int, width: int) -> float:
    """8·bytes / (H·W) of the full-resolution image."""
    return 8.0 * n_bytes / (height * width)


# --------------------------------------------------------------------------- training


def train_steps(model: LabelMapModel, maps: Sequence[np.ndarray], steps: int, *, lr: float = 1e-3,
                optimizer: torch.optim.Optimizer | None = None, seed: int = 0) -> list[float]:
    """Minimise R_seg (bits per symbol) on symbol maps; returns the loss of each step.
    Each step uses one map (cycled, seeded order)."""
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    model.train()
    losses = []
    for _ in range(steps):
        sym = torch.as_tensor(np.asarray(maps[int(rng.integers(len(maps)))], dtype=np.int64))[None]
        loss = model.rate_bits(sym) / sym.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


# --------------------------------------------------------------------------- Table 2


@dataclass(frozen=True)
class LabelRate:
    """One row of the paper's Table 2: mean lossless bpp over the maps."""

    size: str  # "full" | "1/16"
    classes: str  # class set name
    coder: str  # "png" | "autoregressive"
    bpp: float
    model: str  # "trained" | "untrained" | "-" (PNG)


def rate_table(maps: Iterable[np.ndarray], class_sets: Mapping[str, tuple[str, str]],
               models: Mapping[tuple[str, str], LabelMapModel] | None = None,
               factor: int = FACTOR, sizes: Sequence[str] = ("full", "1/16")) -> list[LabelRate]:
    """The Table 2 grid: {full, 1/factor} × class sets × {PNG, autoregressive}, mean bpp.

    ``maps``: full-resolution label maps of a source class set. ``class_sets``: name →
    (source set, target set) for :func:`convert_classes`, e.g. ``{"cocostuff182":
    ("cocostuff182", "cocostuff182"), "coco_merged9": ("cocostuff182", "coco_merged9")}``.
    ``models``: (size, class set) → trained :class:`LabelMapModel`; a missing one is an
    untrained model (still lossless, worse rate), reported as such. Every autoregressive
    size is that of a decodable stream of :func:`encode`. ``sizes`` picks the rows
    (full-resolution maps take seconds each).
    """
    maps = [np.asarray(m, dtype=np.uint8) for m in maps]
    models = dict(models or {})
    rows = []
    for size in sizes:
        for name, (source, target) in class_sets.items():
            n_classes = NUM_CLASSES[target]
            png, ar, tag = [], [], "trained"
            model = models.get((size, name))
            if model is None:
                torch.manual_seed(0)
                model, tag = LabelMapModel(n_classes + 1), "untrained"
            for full in maps:
                h, w = full.shape
                lab = convert_classes(full, source, target)
                if size != "full":
                    lab = downscale(lab, factor)
                png.append(bpp(len(png_bytes(lab)), h, w))
                sym = to_symbols(lab, n_classes)
                data = encode(sym, model)
                ar.append(bpp(len(data), h, w))
            rows.append(LabelRate(size, name, "png", float(np.mean(png)), "-"))
            rows.append(LabelRate(size, name, "autoregressive", float(np.mean(ar)), tag))
    return rows
