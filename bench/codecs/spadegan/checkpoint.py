"""Checkpoint files of the SPADE-GAN codec (our own format; no official weights exist).

One ``.pt`` file per rate point, written with ``torch.save`` and readable with
``torch.load(weights_only=True)`` — only dicts, strings, numbers and tensors::

    {
      "format": "semcodec-bench/spadegan",
      "format_version": 1,
      "config": {width, latent_channels, mixtures, semantic_width, class_set,
                 num_classes, label_hidden, lambda_mse},   # SpadeGANConfig
      "training": {"stage": "init" | "rd" | "gan", "steps_rd": int, "steps_gan": int,
                   "steps_labels": int, ...},             # informative only
      "model": SpadeGANModel.state_dict(),     # keys g_a.*, h_a.*, h_s.*, context_prediction.*,
                                               # entropy_parameters.*, entropy_bottleneck.*,
                                               # gaussian_conditional.*, g_s.*
      "labelmap": LabelMapModel.state_dict(),  # keys masked.*, head.*
    }

The entropy bottleneck's CDF tables are computed (compressai ``update()``) before saving
and again after loading. Loading is strict: the state_dict keys must match the
architecture the config describes (:func:`bench.runtime.weights.check_keys`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bench.runtime.weights import check_keys, load_state_dict

from ...errors import WeightsError
from .labelmap import LabelMapModel
from .model import SpadeGANConfig, SpadeGANModel

FORMAT = "semcodec-bench/spadegan"
FORMAT_VERSION = 1


def build(config: SpadeGANConfig) -> tuple[SpadeGANModel, LabelMapModel]:
    """Fresh (random-initialised) networks for ``config``."""
    return SpadeGANModel(config), LabelMapModel(config.num_symbols, config.label_hidden)


def save(path: str | Path, model: SpadeGANModel, labels: LabelMapModel, training: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint (after refreshing the entropy coder's CDF tables)."""
    model.update(force=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "training": dict(training or {"stage": "init"}),
        "model": model.state_dict(),
        "labelmap": labels.state_dict(),
    }, path)
    return path


def load(path: str | Path) -> tuple[SpadeGANModel, LabelMapModel, dict[str, Any]]:
    """Read a checkpoint → (model, label-map model, training info), both in eval mode."""
    obj = load_state_dict(path)
    fix = "use a checkpoint written by `bench train spadegan` (bench.codecs.spadegan.checkpoint.save)"
    if obj.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a spadegan checkpoint (format {obj.get('format')!r})", fix)
    if obj.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{path} has spadegan checkpoint format version {obj.get('format_version')!r}, "
                           f"this code reads version {FORMAT_VERSION}", fix)
    for key in ("config", "model", "labelmap"):
        if not isinstance(obj.get(key), dict):
            raise WeightsError(f"{path} has no {key!r} mapping", fix)
    try:
        config = SpadeGANConfig.from_dict(dict(obj["config"]))
    except (TypeError, ValueError) as err:
        raise WeightsError(f"{path}: bad config {obj['config']!r}: {err}", fix) from None
    model, labels = build(config)
    check_keys(set(model.state_dict()), set(obj["model"]), f"{path} (spadegan model)")
    check_keys(set(labels.state_dict()), set(obj["labelmap"]), f"{path} (spadegan label-map model)")
    try:
        model.load_state_dict(obj["model"], strict=True)
        labels.load_state_dict(obj["labelmap"], strict=True)
    except RuntimeError as err:  # shape mismatch
        raise WeightsError(f"{path}: tensors do not fit the architecture of its config: {err}",
                           "the file is corrupt or was edited; retrain or re-save it") from None
    model.update(force=False)
    model.eval()
    labels.eval()
    return model, labels, dict(obj.get("training") or {})
