"""Reconstructions for the HTML report's crops: a codec rebuilt from a run's recorded settings
re-codes one image (nothing is stored)."""


from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.execution.runner import semantics_for
from bench.registry import catalog
from bench.report.html_parts import HtmlOptions

from ..errors import BenchError

log = logging.getLogger("bench")


def _rebuild_codec(name: str, recorded: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> Any:
    """The codec from its card, with the run's recorded settings; raises BenchError when
    its describe() cannot be made to match the recorded one."""
    codec = catalog.make_codec(name, **dict(overrides))
    if recorded is None or codec.describe() == recorded:
        return codec
    params = dict(recorded.get("params") or {})
    accepted = inspect.signature(type(codec).__init__).parameters
    kwargs = {k: v for k, v in params.items() if k in accepted}
    kwargs.update(overrides)
    codec = catalog.make_codec(name, **kwargs)
    if codec.describe() != recorded:
        raise BenchError(f"{name}: its current settings differ from the run's", "pass them with --param NAME.KEY=VALUE")
    return codec


def center_crop(image: np.ndarray, side: int) -> np.ndarray:
    """The centred ``side`` × ``side`` square of an H×W(×C) image (smaller when the image is)."""
    h, w = image.shape[:2]
    s = min(side, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return image[y:y + s, x:x + s]


def run_dataset(run: dict[str, Any]) -> Any:
    """The dataset a stored run evaluated, rebuilt from its recorded name and parameters
    (its protocol preset already merged in), for recomputing crops."""
    config = run.get("config") or {}
    if not config.get("dataset"):
        raise BenchError(f"run {run.get('run_id')} does not record its dataset", "crops need a run made by bench run")
    return catalog.make_dataset(config["dataset"], **(config.get("dataset_params") or {}))


def _recompute(run: Mapping[str, Any], codec_name: str, rate: str, sample: Any, dataset: Any,
               options: HtmlOptions) -> tuple[Any, np.ndarray]:
    """(encoded, reconstruction) of ``sample`` by the run's codec at ``rate``, recomputed now."""
    recorded = (run["meta"].get("codecs") or {}).get(codec_name)
    codec = _rebuild_codec(codec_name, recorded, options.codec_params.get(codec_name, {}))
    if codec.missing():
        raise BenchError(f"{codec_name} is not available here", "see `bench doctor`")
    enc = codec.encode(sample.image, codec.rate_knob.parse(rate),
                       semantics=semantics_for(codec, sample, dataset.class_set.name if dataset.class_set else None))
    return enc, codec.decode(dict(enc.parts))
