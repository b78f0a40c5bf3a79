"""Adapter of the SPADE-GAN semantic codec (Iwai et al. 2024) for the harness.

Rate points are checkpoints: the knob ``checkpoint`` takes tags (e.g. ``lambda0.4``), each
mapped to a file of :mod:`.checkpoint`'s format. Where the files are found:

* ``checkpoints: {tag: path, ...}`` in the card / ``--codec-param``: exactly these;
* else ``checkpoint_dir`` (param, or ``$BENCH_SPADEGAN_DIR``): every ``<tag>.pt`` in it;
* else ``spadegan/<tag>.pt`` under ``--weights-dir`` / ``$BENCH_WEIGHTS_DIR`` / the torch
  hub cache, for the default tags (the paper's COCO λ: 0.4, 0.75, 1.5).

No pretrained weights exist: make them with ``bench train spadegan`` (see :mod:`.train`).
Tags are ordered by the number after ``lambda`` (else by name); that order is shared by
sender and receiver (the 1-byte model index of the header).

Semantics: the ground-truth label map given by the runner, converted to the checkpoint's
class set (:func:`.labelmap.convert_classes`), downscaled 16× and coded losslessly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.runtime.weights import WeightSpec, find, sha256_file

from ...errors import CodecError, ConfigError, UnavailableError
from ..base import Codec, Encoded, RateKnob, Requirement, Semantics, check_rgb_uint8
from . import bitstream, checkpoint, labelmap
from .model import LATENT_FACTOR, PAD_MULTIPLE, one_hot

DEFAULT_TAGS = ("lambda0.4", "lambda0.75", "lambda1.5")  # paper, COCO; Cityscapes: 0.75, 1.5, 5.0
ENV_DIR = "BENCH_SPADEGAN_DIR"
PARTS = ("header", "z", "y", "labels")


def how_to_get(tag: str) -> str:
    lam = tag[len("lambda"):] if tag.startswith("lambda") else "<λ>"
    return (f"no pretrained SPADE-GAN weights exist; train one: `bench train spadegan --dataset coco "
            f"--lambda-mse {lam} --out DIR/{tag}.pt` and set params.checkpoint_dir: DIR (or "
            f"params.checkpoints: {{{tag}: FILE}}, or ${ENV_DIR}=DIR)")


def _tag_key(tag: str) -> tuple[float, str]:
    match = re.fullmatch(r"lambda([0-9.eE+-]+)", tag)
    try:
        return (float(match.group(1)) if match else float("inf"), tag)
    except ValueError:
        return (float("inf"), tag)


class SpadeGANCodec(Codec):
    """SPADE-GAN codec. Knob: checkpoint tag (higher λ = more bits). Needs semantics."""

    name = "spadegan"
    version = "1"
    needs_semantics = True
    rate_knob = RateKnob("checkpoint", DEFAULT_TAGS, higher_is_better=True, unit="tag")

    def __init__(self, checkpoints: Mapping[str, str] | None = None, checkpoint_dir: str | None = None,
                 weights_dir: str | None = None, threads: int | None = None) -> None:
        if checkpoints is not None and not isinstance(checkpoints, Mapping):
            raise ConfigError("spadegan: params.checkpoints must map tags to files",
                              "write checkpoints: {lambda0.4: /path/lambda0.4.pt, ...}")
        self.weights_dir = weights_dir
        self.threads = threads
        self.paths: dict[str, Path | None] = {}
        if checkpoints:
            self.paths = {str(t): Path(p).expanduser() for t, p in checkpoints.items()}
        else:
            folder = checkpoint_dir or os.environ.get(ENV_DIR)
            if folder and Path(folder).is_dir() and sorted(Path(folder).glob("*.pt")):
                self.paths = {p.stem: p for p in sorted(Path(folder).glob("*.pt"))}
            else:
                self.paths = {t: find(WeightSpec(f"spadegan {t}", f"spadegan/{t}.pt"), None, weights_dir)
                              for t in DEFAULT_TAGS}
                if folder:
                    self.paths = {t: Path(folder) / f"{t}.pt" for t in DEFAULT_TAGS}
        if len(self.paths) > 255:
            raise ConfigError("spadegan: more than 255 checkpoints", "list fewer checkpoints")
        self.tags = sorted(self.paths, key=_tag_key)
        self.rate_knob = RateKnob("checkpoint", tuple(self.tags), higher_is_better=True, unit="tag")
        self._cache: dict[str, tuple[Any, Any]] = {}

    # -- what it needs -------------------------------------------------------------
    def requirements(self) -> list[Requirement]:
        reqs = []
        for tag in self.tags:
            path = self.paths[tag]
            if path is not None and path.is_file():
                reqs.append(Requirement("weights", f"spadegan:{tag}", True, str(path)))
            else:
                where = f"{path} not found; " if path is not None else ""
                reqs.append(Requirement("weights", f"spadegan:{tag}", False, where + how_to_get(tag)))
        return reqs

    def params(self) -> dict[str, Any]:
        return {"checkpoints": {t: (sha256_file(p)[:16] if p is not None and p.is_file() else None)
                                for t, p in self.paths.items()}}

    def _load(self, tag: str) -> tuple[Any, Any]:
        if tag not in self.paths:
            raise ConfigError(f"spadegan: unknown checkpoint tag {tag!r}", f"use one of {self.tags}")
        if tag not in self._cache:
            path = self.paths[tag]
            if path is None or not path.is_file():
                raise UnavailableError(f"spadegan: checkpoint for {tag!r} not found", how_to_get(tag))
            model, labels, _ = checkpoint.load(path)
            self._cache[tag] = (model, labels)
        return self._cache[tag]

    # -- the work -----------------------------------------------------------------
    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        check_rgb_uint8(image)
        if semantics is None:
            raise CodecError("spadegan needs a semantic label map", "run it on a dataset with labels")
        tag = str(rate)
        model, label_model = self._load(tag)
        cfg = model.config
        h, w = image.shape[:2]
        labels = labelmap.convert_classes(semantics.labels, semantics.class_set, cfg.class_set)
        if labels.shape != (h, w):
            raise CodecError(f"label map {labels.shape} does not match the image {h}x{w}",
                             "give a label map of the image's size")
        with _threads(self.threads):
            x = _to_tensor(image)
            y_bytes, z_bytes, abs_max, _ = bitstream.compress_latents(model, x)
            small = labelmap.downscale(labelmap.pad_to_multiple(labels, PAD_MULTIPLE), LATENT_FACTOR)
            label_bytes = labelmap.encode(labelmap.to_symbols(small, cfg.num_classes), label_model)
        header = bitstream.Header(h, w, self.tags.index(tag), abs_max)
        parts = {"header": header.pack(), "z": z_bytes, "y": y_bytes, "labels": label_bytes}
        return Encoded(parts, {"latent_abs_max": abs_max})

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        missing = [p for p in PARTS if p not in parts]
        if missing:
            raise CodecError(f"spadegan: parts {missing} missing", f"pass all parts {PARTS} from encode()")
        header = bitstream.Header.unpack(parts["header"])
        if header.model_index >= len(self.tags):
            raise CodecError(f"spadegan: stream names checkpoint #{header.model_index}, only {len(self.tags)} known",
                             "decode with the same checkpoint set as the encoder")
        model, label_model = self._load(self.tags[header.model_index])
        with _threads(self.threads), torch.no_grad():
            y_hat = bitstream.decompress_latents(model, parts["y"], parts["z"], header.abs_max, header.latent_size)
            symbols = labelmap.decode(parts["labels"], header.latent_size, label_model)
            sem = one_hot(torch.as_tensor(symbols)[None], model.config.num_symbols)
            x_hat = model.g_s(y_hat, sem).clamp(0, 1)[0, :, :header.height, :header.width]
        return (x_hat.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 → 1×3×Hp×Wp float in [0, 1], edge-padded to multiples of 64."""
    h, w = image.shape[:2]
    ph, pw = bitstream.padded_size(h, w)
    img = np.pad(image, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 255.0)[None]


class _threads:
    """Temporarily set torch's intra-op thread count (None: leave it)."""

    def __init__(self, n: int | None) -> None:
        self.n, self.old = n, None

    def __enter__(self) -> None:
        if self.n:
            self.old = torch.get_num_threads()
            torch.set_num_threads(int(self.n))

    def __exit__(self, *exc: Any) -> None:
        if self.old:
            torch.set_num_threads(self.old)
