"""The trackers bench writes to itself: TensorBoard and MLflow here, wandb in
:mod:`bench.integrations.wandb_tracker`; :func:`make_tracker` builds one from its ``--log`` text
in this process."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import ConfigError, UnavailableError

if TYPE_CHECKING:

    pass

from bench.integrations.tracking import KINDS, Payload, Tracker, missing_package, render_figures  # noqa: F401


class TensorBoardTracker(Tracker):
    """Event files in ``log_dir`` written by ``torch.utils.tensorboard.SummaryWriter``."""

    kind = "tensorboard"

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise missing_package("tensorboard") from None
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
            raise missing_package("mlflow") from None
        self.uri = uri
        self.client = mlflow_client(uri)
        self.experiment = experiment
        self.run_name = run_name
        self.artifact_location = artifact_location
        self.run_id: str | None = None
        self._params: dict[str, str] = {}
        self._runs: dict[str, str] = {}

    def prepare(self) -> None:
        """Import what the writes use (entities, the local artifact store) before the first one."""
        import mlflow.entities  # noqa: F401
        import mlflow.store.artifact.local_artifact_repo  # noqa: F401

        super().prepare()

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
        write_with(db, lambda tmp: shutil.copyfile(template, tmp))  # type: ignore[arg-type]  # the writer's return value (copyfile's path) is ignored
    client = MlflowClient(tracking_uri=uri)
    if fresh and not template.is_file():
        try:
            client.search_experiments(max_results=1)  # the tables exist now: keep a copy of the empty store
            template.parent.mkdir(parents=True, exist_ok=True)
            write_with(template, lambda tmp: shutil.copyfile(db, tmp))  # type: ignore[arg-type]  # the writer's return value (copyfile's path) is ignored
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


def make_tracker(spec: str, results_dir: str | Path = "results") -> Tracker:
    """``tensorboard[:DIR]`` (default ``<results_dir>/tensorboard``), ``mlflow[:URI|DIR]``
    (default ``<results_dir>/mlruns``) or ``wandb[:DIR]`` (default ``<results_dir>/wandb``),
    written in this process."""
    kind, _, target = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "wandb":
        from bench.integrations.wandb_tracker import WandbTracker

        return WandbTracker(target or Path(results_dir) / "wandb")
    if kind == "tensorboard":
        return TensorBoardTracker(target or Path(results_dir) / "tensorboard")
    if kind == "mlflow":
        uri, artifacts = mlflow_uri(target or str(Path(results_dir) / "mlruns"))
        return MLflowTracker(uri, artifact_location=artifacts)
    raise ConfigError(f"--log {spec!r}: unknown tracker {kind!r}", f"use one of {', '.join(KINDS)}, e.g. "
                      "--log tensorboard:runs/tb, --log mlflow:results/mlruns or --log wandb")
