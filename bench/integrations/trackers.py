"""Send a run's results to the experiment trackers researchers watch: TensorBoard, MLflow, wandb.

``--log tensorboard[:DIR]`` / ``--log mlflow[:URI]`` / ``--log wandb[:DIR]`` on ``bench run`` and
``bench sweep``, ``log=`` in :func:`bench.evaluate` and in the Lightning ``BenchCallback``
write, at the run's step (a checkpoint's training step in a sweep, Lightning's step in a
training, else 0):

* scalars, one per codec × metric × rate point, named ``<codec>/<metric>/rate_<rate>`` (bpp
  included as metric ``bpp``; values in the report's units: dB, [0, 1], …);
* the rate–distortion curves (one figure per metric, as in the report), under ``rd/``, drawn
  once when the tracker closes, at its last step;
* a few reconstruction crops (lowest and highest rate point of each codec on the first image,
  recomputed; the original beside them), under ``crops/``;
* the run metadata (dataset, content hash, codec and metric identities, tag, git sha) as
  params / text.

TensorBoard goes through ``torch.utils.tensorboard.SummaryWriter`` (needs the ``tensorboard``
package; default folder ``<results>/tensorboard``); MLflow through ``mlflow.MlflowClient``
(default ``sqlite:///<results>/mlruns/mlflow.db`` with artifacts beside it, a local file store;
``mlflow:DIR`` puts both in DIR; any tracking URI is accepted); wandb through ``wandb.init``
(:mod:`bench.integrations.wandb_tracker`; default folder ``<results>/wandb``, ``WANDB_MODE``
honoured, offline when no API key is configured). One tracker object keeps one TensorBoard
writer / one MLflow run / one wandb run, so a sweep — or a training with the callback — logs
every checkpoint or evaluation into the same one: metric histories with one point per step.
Trackers named by text are opened and written in a background process
(:mod:`bench.integrations.background`): logging does not slow the evaluation down.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from bench.errors import ConfigError, UnavailableError

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
    figures: dict[str, "Figure"] = field(default_factory=dict)
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


def reconstruction_crops(config: "RunConfig", store: "Store", run_id: str, *, per_codec: int = 2,
                         side: int = 128) -> dict[str, np.ndarray]:
    """Centre crops (``side`` px) of the first fully coded image: the original and each codec's
    reconstruction at its lowest and highest rate point (by bpp), recomputed with the run's
    codecs (instances as given, names rebuilt from their cards and ``config.codec_params``).
    A codec that cannot be rebuilt or fails is left out."""
    from bench.codecs.base import Codec
    from bench.errors import BenchError
    from bench.execution.pipeline import code
    from bench.execution.runner import apply_protocol, resolve_codecs
    from bench.registry import catalog
    from bench.report.html import center_crop

    rows = [r for r in store.rows(run_id) if r.status == "ok" and r.bpp is not None]
    if not rows or per_codec <= 0:
        return {}
    config, _record = apply_protocol(config)  # the dataset as the run read it (a --protocol preset's size …)
    image_id = sorted({r.image_id for r in rows})[0]
    dataset = config.dataset if not isinstance(config.dataset, str) else \
        catalog.make_dataset(config.dataset, **config.dataset_params)
    sample = dataset.get(image_id)
    class_set = dataset.class_set.name if dataset.class_set else None
    out = {"original": center_crop(sample.image, side)}
    instances = {c.name: c for c in config.codecs if isinstance(c, Codec)}
    for name in dict.fromkeys(r.codec for r in rows if r.image_id == image_id):
        points = sorted((r for r in rows if r.image_id == image_id and r.codec == name), key=lambda r: math.inf if r.bpp is None else r.bpp)
        chosen = [points[0], points[-1]][:per_codec] if len(points) > 1 else points[:1]
        chosen = list({r.rate: r for r in chosen}.values())
        try:
            # names are built as the runner builds them (card, codec params, --weights-dir)
            codec = instances.get(name) or resolve_codecs([name], config.codec_params,
                                                          config.metric_options.get("weights_dir"))[0][0]
        except BenchError:
            continue
        for r in chosen:
            coded = code(codec, codec.rate_knob.parse(r.rate), sample, class_set)
            if coded.recon is not None:
                out[_UNSAFE.sub("_", f"{name}_rate_{r.rate}_{r.bpp:.3f}bpp")] = center_crop(coded.recon, side)
    return out


def payload(store: "Store", run_id: str, step: int | None = None, *, config: "RunConfig | None" = None,
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


def render_figures(data: Payload) -> dict[str, "Figure"]:
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

    def flush_figures(self) -> tuple[int, dict[str, "Figure"]]:
        """(step, figures) of the last payload with curves, drawn now; then forgotten."""
        last, self._last = self._last, None
        return (last.step, render_figures(last)) if last is not None else (0, {})

    @abstractmethod
    def write(self, data: Payload) -> None:
        """Log one run's scalars, figures, images and params at ``data.step``."""

    def close(self) -> None:
        """Flush and release."""

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def missing_package(package: str) -> UnavailableError:
    """The error of a tracker whose package is not installed (with the pip line)."""
    return UnavailableError(f"--log needs the {package} package, which is not installed",
                            f"pip install {package}   (or pip install 'semcodec-bench[track]')")


_missing = missing_package


class TensorBoardTracker(Tracker):
    """Event files in ``log_dir`` written by ``torch.utils.tensorboard.SummaryWriter``."""

    kind = "tensorboard"

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard") from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self._texts: set[str] = set()

    def write(self, data: Payload) -> None:
        for key, value in data.scalars.items():
            self.writer.add_scalar(key, value, data.step)
        self.keep_figures(data)
        for name, image in data.images.items():
            self.writer.add_image(f"crops/{name}", image, data.step, dataformats="HWC")
        table = "\n".join(f"| {k} | {v} |" for k, v in data.params.items())
        self.writer.add_text("run/metadata", "| key | value |\n|---|---|\n" + table, data.step)
        self.writer.flush()

    def close(self) -> None:
        step, figures = self.flush_figures()
        for name, fig in figures.items():
            self.writer.add_figure(f"rd/{name}", fig, step, close=False)
        self.writer.close()


class MLflowTracker(Tracker):
    """One MLflow run (created on the first write, in experiment ``experiment``) through
    ``mlflow.MlflowClient(tracking_uri)``: every write adds one point per metric at its step.
    Params are logged once; tag ``bench.run_id`` names the latest bench run and
    ``bench.runs`` every ``step: run id``; a later step whose metadata differs (a sweep's
    checkpoint hash, its tag) records it as tag ``bench.step_<n>.<key>``."""

    kind = "mlflow"

    def __init__(self, uri: str, *, experiment: str = "bench", run_name: str | None = None,
                 artifact_location: str | None = None) -> None:
        try:
            import mlflow  # noqa: F401  (is it installed?)
        except ImportError:
            raise _missing("mlflow") from None
        self.uri = uri
        self.client = mlflow_client(uri)
        self.experiment = experiment
        self.run_name = run_name
        self.artifact_location = artifact_location
        self.run_id: str | None = None
        self._params: dict[str, str] = {}
        self._runs: dict[str, str] = {}

    def _start(self, data: Payload) -> str:
        if self.run_id is None:
            try:
                exp = self.client.get_experiment_by_name(self.experiment)
                eid = exp.experiment_id if exp is not None else self.client.create_experiment(
                    self.experiment, artifact_location=self.artifact_location)
            except Exception as err:  # mlflow raises MlflowException for a refused store
                raise UnavailableError(f"cannot open the MLflow store {self.uri}: {str(err).splitlines()[0]}",
                                       "use --log mlflow:DIR (a local sqlite store) or a sqlite:/// or "
                                       "http:// tracking URI") from None
            run = self.client.create_run(eid, run_name=self.run_name or data.run_id,
                                         tags={"bench.run_id": data.run_id})
            self.run_id = run.info.run_id
        return self.run_id

    def write(self, data: Payload) -> None:
        import time

        from mlflow.entities import Metric, Param, RunTag

        rid = self._start(data)
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, data.step) for k, v in data.scalars.items()]
        new = [Param(k, v) for k, v in data.params.items() if k not in self._params]
        changed = [RunTag(f"bench.step_{data.step}.{k}"[:250], v) for k, v in data.params.items()
                   if k in self._params and self._params[k] != v and k != "run_id"]
        self._params.update({p.key: p.value for p in new})
        self._runs[str(data.step)] = data.run_id
        changed += [RunTag("bench.run_id", data.run_id), RunTag("bench.runs", json.dumps(self._runs)[:5000])]
        for i in range(0, max(len(metrics), len(new), len(changed)), 90):  # log_batch takes ≤ 100 params
            self.client.log_batch(rid, metrics=metrics[i:i + 90], params=new[i:i + 90], tags=changed[i:i + 90])
        self.keep_figures(data)
        for name, image in data.images.items():
            self.client.log_image(rid, image, artifact_file=f"crops/step_{data.step}/{name}.png")

    def close(self) -> None:
        if self.run_id is not None:
            step, figures = self.flush_figures()
            for name, fig in figures.items():
                self.client.log_figure(self.run_id, fig, f"rd/step_{step}/{name}.png")
            self.client.set_terminated(self.run_id)


def mlflow_client(uri: str) -> Any:
    """``MlflowClient(uri)``; a new local sqlite store starts as a copy of an empty store made
    once per MLflow version in ``$BENCH_CACHE_DIR`` (creating one runs MLflow's ~50 schema
    migrations: 5–20 s), whose own creation leaves that copy behind."""
    import shutil

    import mlflow
    from mlflow import MlflowClient

    from bench.runtime.refcache import default_dir
    from bench.storage.atomic import write_with

    db = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
    template = default_dir() / f"mlflow-{mlflow.__version__}-empty.db"
    fresh = db is not None and not db.exists()
    if fresh and template.is_file():
        write_with(db, lambda tmp: shutil.copyfile(template, tmp))  # type: ignore[arg-type]
    client = MlflowClient(tracking_uri=uri)
    if fresh and not template.is_file():
        try:
            client.search_experiments(max_results=1)  # the tables exist now: keep a copy of the empty store
            template.parent.mkdir(parents=True, exist_ok=True)
            write_with(template, lambda tmp: shutil.copyfile(db, tmp))  # type: ignore[arg-type]
        except OSError:
            pass  # no cache folder: the next new store migrates again
    return client


def mlflow_uri(target: str) -> tuple[str, str | None]:
    """A tracking URI and artifact location for ``--log mlflow:TARGET``: a URI with a scheme is
    used as it is; a folder becomes ``sqlite:///<folder>/mlflow.db`` with artifacts in
    ``<folder>/artifacts``."""
    if re.match(r"^[a-zA-Z][\w+.-]*://", target) or target.startswith("file:"):
        return target, None
    folder = Path(target).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def open_tracker(spec: str, results_dir: str | Path = "results", *, background: bool = True) -> Tracker:
    """``tensorboard[:DIR]`` (default ``<results_dir>/tensorboard``), ``mlflow[:URI|DIR]``
    (default ``<results_dir>/mlruns``) or ``wandb[:DIR]`` (default ``<results_dir>/wandb``);
    with ``background`` a :class:`~bench.integrations.background.Deferred` writer process."""
    kind, _, target = spec.partition(":")
    kind = kind.strip().lower()
    if background and kind in KINDS:
        from .background import Deferred

        return Deferred(spec, results_dir)
    if kind == "wandb":
        from .wandb_tracker import WandbTracker

        return WandbTracker(target or Path(results_dir) / "wandb")
    if kind == "tensorboard":
        return TensorBoardTracker(target or Path(results_dir) / "tensorboard")
    if kind == "mlflow":
        uri, artifacts = mlflow_uri(target or str(Path(results_dir) / "mlruns"))
        return MLflowTracker(uri, artifact_location=artifacts)
    raise ConfigError(f"--log {spec!r}: unknown tracker {kind!r}", f"use one of {', '.join(KINDS)}, e.g. "
                      "--log tensorboard:runs/tb, --log mlflow:results/mlruns or --log wandb")


def open_trackers(log: str | Tracker | Sequence[str | Tracker] | None,
                  results_dir: str | Path = "results") -> tuple[list[Tracker], list[Tracker]]:
    """(all trackers, those opened here, which the caller closes) for ``log``."""
    items = [log] if isinstance(log, (str, Tracker)) else list(log or [])
    opened: list[Tracker] = []
    try:
        for item in items:
            if isinstance(item, str):
                opened.append(open_tracker(item, results_dir))
    except BaseException:  # a later spec is refused: close those already opened
        for tracker in opened:
            tracker.close()
        raise
    given = [i for i in items if isinstance(i, Tracker)]
    return given + opened, opened


def log_run(log: str | Tracker | Sequence[str | Tracker], store: "Store", run_id: str, *, step: int | None = None,
            config: "RunConfig | None" = None, crops: int = 2) -> None:
    """Send run ``run_id`` to the trackers in ``log`` at ``step`` (trackers given as text are
    opened beside the store and closed again)."""
    from .background import Deferred, Job

    trackers, opened = open_trackers(log, Path(store.path).parent)
    try:
        images = reconstruction_crops(config, store, run_id, per_codec=crops) if config is not None and crops > 0 \
            else {}
        data = None
        for tracker in trackers:
            if isinstance(tracker, Deferred):  # reads the run back from the store in its own process
                tracker.send(Job(str(Path(store.path).resolve()), store.run(run_id)["run_id"], int(step or 0), images))
                continue
            if data is None:
                data = payload(store, run_id, step, crops=0)
                data.images = images
            if not isinstance(tracker, (TensorBoardTracker, MLflowTracker)) and tracker.kind != "wandb":
                data.figures = render_figures(data)  # a tracker of the caller's own gets them every step
            tracker.write(data)
    finally:
        for tracker in opened:
            tracker.close()
