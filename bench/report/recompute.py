"""Reconstructions for the HTML report's crops: a codec rebuilt from a run's recorded settings
re-codes one image (nothing is stored in the run), and :class:`Crops` keeps each crop's WebP
thumbnail once per page and, given a folder, on disk by content, so a second page is not
recomputed."""


from __future__ import annotations

import hashlib
import inspect
import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.execution.runner import semantics_for
from bench.registry import catalog
from bench.report.html_parts import HtmlOptions, array_uri, keep_file

from ..errors import BenchError

log = logging.getLogger("bench")

_KEY_VERSION = "bench-crop-v1"  # bump when what a key stands for changes
THUMBNAIL_QUALITY = 90  # WebP quality of a crop's thumbnail (a preview: exact pixels via bench export)


def _rebuild_codec(name: str, recorded: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> Any:
    """The codec from its card, with the run's recorded settings; raises BenchError when
    its describe() cannot be made to match the recorded one."""
    codec = catalog.make_codec(name, **dict(overrides))
    missing = codec.missing()  # before comparing: a codec whose tool is absent describes itself differently
    if missing:
        raise BenchError(f"{name} is not available here: needs {', '.join(f'{r.kind} {r.name}' for r in missing)}",
                         f"{missing[0].detail}; see `bench doctor`")
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
    enc = codec.encode(sample.image, codec.rate_knob.parse(rate),
                       semantics=semantics_for(codec, sample, dataset.class_set.name if dataset.class_set else None))
    return enc, codec.decode(dict(enc.parts))


class Crops:
    """Centre crops (WebP data URIs) of one run group's originals and recomputed
    reconstructions, coded by ``workers`` threads (Pillow's encoders and a codec's subprocess
    let go of the GIL; a codec not ``parallel_safe``, a network, by one thread of its own)
    while the page is assembled. ``dataset()`` builds the run's dataset: called once, at the
    first crop not kept. Kept per page and, with ``folder``, as ``<folder>/<sha256>.json``
    keyed by everything that decides the pixels: the image's sha256 (the rows' ``image_sha256``), the
    dataset's content hash and the run's config (labels and semantics), the codec's recorded
    ``describe()`` (version, params, weights) and card overrides, the rate, the crop side and
    the thumbnail quality. A registered codec codes the same pixels the same way, as the run's
    result cache assumes. :meth:`close` when done."""

    def __init__(self, options: HtmlOptions, dataset: Callable[[], Any], folder: Path | None = None,
                 workers: int = 1) -> None:
        self.options, self._dataset, self.folder = options, dataset, folder
        self._ds: list[Any] = []
        self._memo: dict[str, Future[dict[str, Any]]] = {}
        self._samples: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._workers = max(1, workers)
        self._pools: dict[int, ThreadPoolExecutor] = {}

    def dataset(self) -> Any:
        """The run's dataset (rebuilt once, by the first thread that needs it)."""
        with self._lock:
            if not self._ds:
                self._ds.append(self._dataset())
            return self._ds[0]

    def sample(self, image_id: str) -> Any:
        """The dataset's sample (loaded once per page)."""
        with self._lock:
            if image_id not in self._samples:
                self._samples[image_id] = self.dataset().load(image_id)
            return self._samples[image_id]

    def original(self, image_id: str, sha: str | None) -> Future[dict[str, Any]]:
        """The original's crop, as ``{"uri": …}`` once done."""
        return self._get(["original", sha, image_id], sha, lambda: {"uri": self._thumb(self.sample(image_id).image)},
                         True)

    def reconstruction(self, run: Mapping[str, Any], codec: str, rate: str, image_id: str,
                       sha: str | None) -> Future[dict[str, Any]]:
        """``{"uri": crop, "bytes": recomputed total bytes}`` of ``codec`` at ``rate`` on
        ``image_id`` once done; its ``result()`` raises BenchError (codec not rebuildable or
        missing) or the codec's own error."""
        meta = run["meta"]
        parts = ["recon", sha, image_id, (meta.get("dataset") or {}).get("content_hash"), run.get("config"),
                 (meta.get("codecs") or {}).get(codec), self.options.codec_params.get(codec), codec, str(rate)]

        def make() -> dict[str, Any]:
            sample = self.sample(image_id)
            enc, recon = _recompute(run, codec, rate, sample, self.dataset(), self.options)
            return {"uri": self._thumb(recon), "bytes": int(enc.total_bytes)}

        try:  # a network (not ``parallel_safe``) is built and run by one thread at a time: memory
            shared = bool(getattr(catalog.codec_class(codec), "parallel_safe", False))
        except Exception:  # noqa: BLE001 - no card: its error comes from make(), in the serial lane
            shared = False
        return self._get(parts, sha, make, shared)

    def close(self) -> None:
        """Wait for the crops being coded (dropping those not begun)."""
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()

    def _thumb(self, image: np.ndarray) -> str:
        return array_uri(center_crop(image, self.options.crop), THUMBNAIL_QUALITY)

    def _get(self, parts: list[Any], sha: str | None, make: Callable[[], dict[str, Any]],
             shared: bool) -> Future[dict[str, Any]]:
        text = json.dumps([_KEY_VERSION, self.options.crop, THUMBNAIL_QUALITY, *parts], sort_keys=True, default=str)
        key = hashlib.sha256(text.encode()).hexdigest()
        if key in self._memo:
            return self._memo[key]
        path = self.folder / f"{key}.json" if self.folder is not None and sha else None  # pixels unknown: no disk
        if path is not None:
            try:
                got = json.loads(path.read_text())
                if isinstance(got, dict) and isinstance(got.get("uri"), str):
                    done: Future[dict[str, Any]] = Future()
                    done.set_result(got)
                    self._memo[key] = done
                    return done
            except (OSError, ValueError):
                pass
        lane = int(not shared)  # 0: the pool of ``workers`` threads; 1: one thread
        if lane not in self._pools:
            self._pools[lane] = ThreadPoolExecutor(self._workers if shared else 1, thread_name_prefix="bench-crop")
        self._memo[key] = future = self._pools[lane].submit(self._make, make, path)
        return future

    @staticmethod
    def _make(make: Callable[[], dict[str, Any]], path: Path | None) -> dict[str, Any]:
        got = make()
        if path is not None:
            keep_file(path, json.dumps(got).encode())
        return got
