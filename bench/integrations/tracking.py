"""What every tracker shares: the :class:`Tracker` interface, the :class:`Payload` of one run
(scalars, params, figures, crops) read from the store, and the names of the scalars."""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import UnavailableError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bench.execution.runner import RunConfig
    from bench.storage.store import Store

KINDS = ("tensorboard", "mlflow", "wandb")
_UNSAFE = re.compile(r"[^\w.\-/: ]")


def scalar_key(codec: str, metric: str, rate: str) -> str:
    """``<codec>/<metric>/rate_<rate>``, with characters trackers refuse replaced by ``_``."""
    return _UNSAFE.sub("_", f"{codec}/{metric}/rate_{rate}")


@dataclass
class Payload:
    """What a tracker receives for one run at one step."""

    run_id: str
    step: int
    scalars: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    curves: Any = None  # the run's summary frame: its RD figures are drawn by render_figures()
    images: dict[str, np.ndarray] = field(default_factory=dict)  # H×W×3 uint8
    params: dict[str, str] = field(default_factory=dict)


def _flatten(obj: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif obj is not None:
        text = obj if isinstance(obj, str) else json.dumps(obj, default=str)
        out[_UNSAFE.sub("_", prefix)[:240]] = text[:500]


def run_params(run: Mapping[str, Any]) -> dict[str, str]:
    """Flat ``key: text`` metadata of a stored run (dataset, codecs, metrics, tag, git sha)."""
    meta = run["meta"]
    out: dict[str, str] = {"run_id": run["run_id"]}
    keep = {k: meta.get(k) for k in ("dataset", "codecs", "rates", "metrics", "tag", "git_sha", "semantics_source")}
    _flatten(keep, "", out)
    return out


def reconstruction_crops(config: RunConfig, store: Store, run_id: str, *, per_codec: int = 2,
                         side: int = 128, cache: dict[Any, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Centre crops (``side`` px) of the first fully coded image: the original and each codec's
    reconstruction at its lowest and highest rate point (by bpp), recomputed with the run's
    codecs (instances as given, names rebuilt from their cards and ``config.codec_params``).
    A codec that cannot be rebuilt or fails is left out. ``cache`` (a dict kept across calls,
    e.g. by a tracker's process over a training) keeps the crops of registered codecs, keyed by
    the pixels' sha256 (the rows' ``image_sha256``), the dataset's and codec's params and the
    rate: a registered codec codes the same pixels the same way at every step, as the result
    cache assumes; instances (a model being trained) are recomputed every time."""
    from bench.codecs.base import Codec
    from bench.errors import BenchError
    from bench.execution.pipeline import code
    from bench.execution.runner import apply_protocol, resolve_codecs
    from bench.registry import catalog
    from bench.report.recompute import center_crop

    rows = [r for r in store.rows(run_id) if r.status == "ok" and r.bpp is not None]
    if not rows or per_codec <= 0:
        return {}
    config, _record = apply_protocol(config)  # the dataset as the run read it (a --protocol preset's size …)
    image_id = sorted({r.image_id for r in rows})[0]
    sha = next((r.notes.get("image_sha256") for r in rows if r.image_id == image_id and r.notes.get("image_sha256")),
               None)
    cache = cache if sha and isinstance(config.dataset, str) else None  # pixels unknown: nothing to match
    seen: dict[str, Any] = {}

    def sample() -> Any:
        if "sample" not in seen:
            dataset = config.dataset if not isinstance(config.dataset, str) else \
                catalog.make_dataset(config.dataset, **config.dataset_params)
            seen["sample"] = dataset.get(image_id)
            seen["class_set"] = dataset.class_set.name if dataset.class_set else None
        return seen["sample"]

    where = (sha, side, config.dataset, json.dumps(config.dataset_params, sort_keys=True, default=str),
             config.protocol, json.dumps(config.semantics_segmenter, sort_keys=True, default=str))
    out = {"original": _cached(cache, (*where, "original"), lambda: center_crop(sample().image, side))}
    instances = {c.name: c for c in config.codecs if isinstance(c, Codec)}
    given = set(instances)  # the caller's instances: never cached
    for name in dict.fromkeys(r.codec for r in rows if r.image_id == image_id):
        points = sorted((r for r in rows if r.image_id == image_id and r.codec == name), key=lambda r: math.inf if r.bpp is None else r.bpp)
        chosen = [points[0], points[-1]][:per_codec] if len(points) > 1 else points[:1]
        chosen = list({r.rate: r for r in chosen}.values())
        who = (*where, name, json.dumps(config.codec_params.get(name), sort_keys=True, default=str),
               config.metric_options.get("weights_dir"))
        for r in chosen:
            def recon(name: str = name, rate: str = r.rate) -> np.ndarray | None:
                if name not in instances:  # names are built as the runner builds them (card, codec params, --weights-dir)
                    instances[name] = resolve_codecs([name], config.codec_params,
                                                     config.metric_options.get("weights_dir"))[0][0]
                codec = instances[name]
                coded = code(codec, codec.rate_knob.parse(rate), sample(), seen.get("class_set"))
                return None if coded.recon is None else center_crop(coded.recon, side)
            try:
                crop = _cached(None if name in given else cache, (*who, r.rate), recon)
            except BenchError:
                break  # this codec cannot be rebuilt: left out
            if crop is not None:
                out[_UNSAFE.sub("_", f"{name}_rate_{r.rate}_{r.bpp:.3f}bpp")] = crop
    return out


def _cached(cache: dict[Any, Any] | None, key: Any, make: Any) -> Any:
    """``cache[key]``, made by ``make()`` when missing (no cache: made every time)."""
    if cache is None:
        return make()
    if key not in cache:
        cache[key] = make()
    return cache[key]


def payload(store: Store, run_id: str, step: int | None = None, *, config: RunConfig | None = None,
            crops: int = 2, figures: bool = True) -> Payload:
    """Scalars, RD figures (unless ``figures`` is False), crops (when ``config`` is given and
    ``crops`` > 0) and params of a run."""
    from bench.report.curves import curve_columns
    from bench.report.summary import column_info, summarise

    run = store.run(run_id)
    df = summarise(store, run["run_id"])
    infos = column_info(df)
    columns = curve_columns(df)
    out = Payload(run["run_id"], int(step or 0), params=run_params(run))
    for rec in df.to_dict(orient="records"):
        for col in ["bpp", *columns]:
            value = rec.get(col)
            key = infos[col].key if col in infos else col
            if isinstance(value, (int, float)) and math.isfinite(value):
                out.scalars[scalar_key(str(rec["codec"]), key, str(rec["rate"]))] = float(value)
    if figures and columns:
        out.curves = df
    if config is not None and crops > 0:
        out.images = reconstruction_crops(config, store, run["run_id"], per_codec=crops)
    return out


def render_figures(data: Payload) -> dict[str, Figure]:
    """The RD figures of ``data``: those given, or one per metric (its first curve column, e.g.
    ``psnr``, ``msssim``; the report has the others) of its summary."""
    from bench.report.curves import curve_columns, file_stem, rd_figure
    from bench.report.summary import column_info

    if data.figures or data.curves is None:
        return data.figures
    infos = column_info(data.curves)
    first = {infos[col].metric: col for col in reversed(curve_columns(data.curves))}
    return {file_stem(col): rd_figure(data.curves, col) for col in reversed(first.values())}


class Tracker(ABC):
    """A destination for :class:`Payload` s; ``close()`` flushes (also on ``with`` exit).

    RD figures are drawn once, at ``close()``, from the last payload that had curves, and
    logged at its step (drawing them at every step of a training cost more than the
    evaluation); scalars, crops and params are logged at every write."""

    kind: str = "tracker"
    _last: Payload | None = None

    def keep_figures(self, data: Payload) -> None:
        """Remember ``data``'s figures for :meth:`flush_figures`."""
        if data.figures or data.curves is not None:
            self._last = data

    def flush_figures(self) -> tuple[int, dict[str, Figure]]:
        """(step, figures) of the last payload with curves, drawn now; then forgotten."""
        last, self._last = self._last, None
        return (last.step, render_figures(last)) if last is not None else (0, {})

    def prepare(self) -> None:
        """Do the slow set-up now (imports, a store, a service, matplotlib's first figure): a
        background writer calls it before the first run arrives, so it overlaps the evaluation."""
        warm_figures()

    @abstractmethod
    def write(self, data: Payload) -> None:
        """Log one run's scalars, figures, images and params at ``data.step``."""

    def close(self) -> None:
        """Flush and release."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def warm_figures() -> None:
    """Import and draw what the RD figures need once (matplotlib's Agg canvas, fonts, the report's
    curve module), so that drawing them at ``close()`` costs only the drawing."""
    import io

    from matplotlib.figure import Figure

    import bench.report.curves  # noqa: F401 (imported now, used by render_figures)

    fig = Figure(figsize=(1, 1))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], "o-", label="x")
    ax.set_xlabel("bpp")
    ax.legend()
    fig.savefig(io.BytesIO(), format="png", dpi=20)


def missing_package(package: str) -> UnavailableError:
    """The error of a tracker whose package is not installed (with the pip line)."""
    return UnavailableError(f"--log needs the {package} package, which is not installed",
                            f"pip install {package}   (or pip install 'semcodec-bench[track]')")


