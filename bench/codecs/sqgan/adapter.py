"""The bench adapter of SQ-GAN.

Rate knob: ``(m_x, m_s)`` — fractions of the 512 latent tokens KEPT in the image and
semantic branches (``k = int(512·m)``), any values in (0, 1]; text form ``"0.4:0.6"``.
The sender needs the semantic map (Cityscapes trainIds, 255 = void): ground truth from
the dataset or a segmenter's output, passed as ``semantics``. The real bytes are the
entropy-coded masks and indices (:mod:`.bitstream`); the official bound (10 bits per kept
index + 1 bit per token and branch, the authors' sample.py) is the paper's rate, declared
with the numeric notes ``bpp_paper`` (the total) and ``bpp_paper_image`` /
``bpp_paper_semantic`` (its two branches; see :mod:`bench.report.rates`), so reports can
draw SQ-GAN at the paper's rate with ``--rate paper`` while ``bpp`` stays the real bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtime.devices import resolve_device
from bench.runtime.weights import WeightSpec, candidates, sha256_path

from ...errors import CodecError, ConfigError
from ..base import Codec, Encoded, RateKnob, Requirement, Semantics, check_rgb_uint8
from . import bitstream
from .config import SQGANConfig, make_config
from .masking import kept_count

WEIGHTS = WeightSpec(
    name="SQ-GAN",
    filename="sqgan_cityscapes.ckpt",
    env="SQGAN_CHECKPOINT",
    source=("the SQ-GAN authors (Pezone et al., github.com/frapez1/SQ-GAN; trained on Cityscapes with "
            "config/sqgan_cityscapes.yml): their Lightning .ckpt, or the folder of split <module>.ckpt parts"),
)
CLASS_SET = "cityscapes19"


@dataclass(frozen=True)
class KeptFractionKnob(RateKnob):
    """``(m_x, m_s)`` pairs; text ``"m_x:m_s"`` (one number sets both)."""

    def parse(self, text: str) -> tuple[float, float]:
        if isinstance(text, (tuple, list)):
            pair = tuple(float(v) for v in text)
        else:
            fields = str(text).replace(",", ":").split(":")
            try:
                pair = tuple(float(f) for f in fields)
            except ValueError:
                pair = ()
            if len(pair) == 1:
                pair = (pair[0], pair[0])
        if len(pair) != 2:
            raise ConfigError(f"sqgan rate {text!r} is not 'm_x:m_s'",
                              "give kept fractions like 0.4:0.6 (image:semantic), each in (0, 1]")
        self.check(pair)
        return pair

    def check(self, value: Any) -> None:
        if isinstance(value, str):
            self.parse(value)
            return
        pair = tuple(value) if isinstance(value, (tuple, list)) else ()
        if len(pair) != 2 or not all(isinstance(v, (int, float)) and 0 < v <= 1 for v in pair):
            raise ConfigError(f"sqgan rate {value!r} is not a pair of kept fractions in (0, 1]",
                              "give kept fractions like 0.4:0.6 (image:semantic), each in (0, 1]")


class SQGANCodec(Codec):
    """SQ-GAN with real entropy-coded token masks and indices.

    Params: ``checkpoint`` (Lightning .ckpt or split-parts folder; else $SQGAN_CHECKPOINT or
    ``sqgan_cityscapes.ckpt`` in the weights dirs), ``model`` (size preset: official | tiny
    | micro), ``device`` (auto | cpu | cuda), ``output`` (official: the authors' clamp +
    truncation to uint8 | round), ``resize`` (False: other sizes than the model's raise;
    True: resize to it and back, recorded), ``trust_pickle`` (see :mod:`.checkpoint`).
    """

    name = "sqgan"
    version = "2"  # 2: the bound is noted as the paper rate (bpp_paper*), was bpp_bound*
    needs_semantics = True
    rate_knob: RateKnob = KeptFractionKnob(
        "kept_fraction",
        tuple((mx, ms) for mx in (0.4, 0.7, 1.0) for ms in (0.4, 0.6, 1.0)),
        higher_is_better=True,
        unit="m_x:m_s",
        minimum=0.0,
        maximum=1.0,
    )

    def __init__(self, checkpoint: str | None = None, model: str = "official", device: str = "auto",
                 output: str = "official", resize: bool = False, trust_pickle: bool = False) -> None:
        self.cfg: SQGANConfig = make_config(str(model))
        self.preset = str(model)
        if output not in ("official", "round"):
            raise ConfigError(f"sqgan: output {output!r} is not 'official' or 'round'", "fix params.output")
        if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ConfigError(f"sqgan: device {device!r} is not auto/cpu/cuda", "fix params.device")
        self.checkpoint = checkpoint
        self.device_name = device
        self.output = output
        self.resize = bool(resize)
        self.trust_pickle = bool(trust_pickle)
        self._model: Any = None
        self._report: Any = None

    # -- what it needs -------------------------------------------------------------
    def checkpoint_path(self) -> Path | None:
        for cand in candidates(WEIGHTS, self.checkpoint):
            if cand.exists():
                return cand
        return None

    def requirements(self) -> list[Requirement]:
        found = self.checkpoint_path()
        if found is not None:
            return [Requirement("weights", "SQ-GAN checkpoint", True, str(found))]
        looked = ", ".join(str(c) for c in candidates(WEIGHTS, self.checkpoint))
        return [Requirement("weights", "SQ-GAN checkpoint", False,
                            f"not found (looked in: {looked}); run `bench fetch sqgan-cityscapes`, or set "
                            f"params.checkpoint or ${WEIGHTS.env}; "
                            f"weights come from {WEIGHTS.source}")]

    def params(self) -> dict[str, Any]:
        path = self.checkpoint_path()
        return {
            "model": self.preset,
            "config": self.cfg.to_dict(),
            "checkpoint_sha256": sha256_path(path) if path else None,
            "output": self.output,
            "resize": self.resize,
            "semantics": f"{CLASS_SET} label map given to the sender (source recorded per row as "
                         "semantics_ground_truth = 1 for dataset ground truth, 0 for a segmenter)",
            "bitstream_version": bitstream.FORMAT_VERSION,
        }

    def rate_label(self, rate: Any) -> str:
        mx, ms = self.rate_knob.parse(rate)
        return f"{mx:g}:{ms:g}"

    # -- model -------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return resolve_device(self.device_name)

    def model(self) -> Any:
        """The loaded :class:`~.model.SQGAN` (built and loaded on first use)."""
        if self._model is None:
            from bench.runtime.weights import missing_message

            from ...errors import WeightsError
            from .checkpoint import load_official
            from .model import SQGAN

            path = self.checkpoint_path()
            if path is None:
                raise WeightsError(missing_message(WEIGHTS, self.checkpoint),
                                   f"set params.checkpoint or ${WEIGHTS.env}; weights come from {WEIGHTS.source}")
            model = SQGAN(self.cfg)
            self._report = load_official(model, path, trust_pickle=self.trust_pickle)
            self._model = model.to(self.device).eval()
        return self._model

    # -- the work ----------------------------------------------------------------------
    def _fit(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.cfg.height, self.cfg.width
        if image.shape[:2] == (h, w):
            return image, labels
        if not self.resize:
            raise CodecError(f"sqgan: the {self.preset} model codes {h}x{w} images, got "
                             f"{image.shape[0]}x{image.shape[1]}",
                             f"use a dataset at {h}x{w} (the Cityscapes protocol resizes to 256x512) "
                             "or set params.resize: true")
        from PIL import Image

        img = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
        lab = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((w, h), Image.Resampling.NEAREST))
        return img, lab

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        """``image`` H×W×3 uint8 + Cityscapes-trainId ``semantics`` → header/semantic/image parts."""
        from .model import labels_to_onehot, normalise_image

        check_rgb_uint8(image)
        m_x, m_s = self.rate_knob.parse(rate)
        if semantics is None:
            raise CodecError("sqgan needs the semantic label map at the sender",
                             "run it on a dataset with cityscapes19 labels, or give a segmenter's map")
        if semantics.class_set != CLASS_SET:
            raise CodecError(f"sqgan was trained on {CLASS_SET} labels, got {semantics.class_set!r}",
                             "use a Cityscapes dataset with trainIds (classes: trainid19)")
        if semantics.labels.shape != image.shape[:2]:
            raise CodecError(f"label map {semantics.labels.shape} does not match image {image.shape[:2]}",
                             "give a label map of the image's size")
        img, lab = self._fit(image, np.asarray(semantics.labels))
        try:
            onehot = labels_to_onehot(lab)
        except ValueError as err:
            raise CodecError(f"sqgan: {err}", "map labels to trainIds (0..18, 255 void)") from None
        model = self.model()
        tokens = model.encode_tokens(normalise_image(img), onehot, m_x, m_s)
        cfg = self.cfg
        parts = bitstream.pack(tokens, image.shape[0], image.shape[1], cfg.n_tokens, cfg.codebook_size, cfg.grid[1])
        h, w = image.shape[:2]
        k_x, k_s = kept_count(m_x, cfg.n_tokens), kept_count(m_s, cfg.n_tokens)
        b_x = bitstream.bound_bpp(k_x, h, w, cfg.n_tokens, cfg.codebook_size)
        b_s = bitstream.bound_bpp(k_s, h, w, cfg.n_tokens, cfg.codebook_size)
        notes = {
            "bpp_paper": b_x + b_s,  # the paper's formula rate (reported beside the real bpp)
            "bpp_paper_image": b_x,
            "bpp_paper_semantic": b_s,
            "kept_tokens_image": k_x,
            "kept_tokens_semantic": k_s,
            "semantics_ground_truth": 1.0 if semantics.source == "ground-truth" else 0.0,
            "resized": 1.0 if (h, w) != (cfg.height, cfg.width) else 0.0,
            "semantics_source": semantics.source,  # text: stored in the row's notes
        }
        return Encoded(parts=parts, notes=notes)

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        """Byte parts → H×W×3 uint8 RGB (the decoded SSM conditions the image decoder)."""
        from .model import to_uint8

        cfg = self.cfg
        tokens, h, w = bitstream.unpack(parts, cfg.n_tokens, cfg.codebook_size, cfg.grid[1])
        x, _ = self.model().decode_tokens(tokens)
        out = to_uint8(x, self.output)
        if (h, w) != (cfg.height, cfg.width):
            from PIL import Image

            out = np.asarray(Image.fromarray(out).resize((w, h), Image.Resampling.BILINEAR))
        return out
