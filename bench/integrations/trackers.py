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
(:mod:`bench.integrations.background`): logging overlaps the evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.integrations.tracker_kinds import (  # noqa: F401 (re-exported)
    MLflowTracker,
    TensorBoardTracker,
    make_tracker,
    mlflow_client,
    mlflow_uri,
)
from bench.integrations.tracking import (  # noqa: F401 (re-exported)
    KINDS,
    Payload,
    Tracker,
    missing_package,
    payload,
    reconstruction_crops,
    render_figures,
    run_params,
    scalar_key,
)

if TYPE_CHECKING:
    from bench.execution.runner import RunConfig
    from bench.storage.store import Store


def open_tracker(spec: str, results_dir: str | Path = "results", *, background: bool = True) -> Tracker:
    """``tensorboard[:DIR]`` (default ``<results_dir>/tensorboard``), ``mlflow[:URI|DIR]``
    (default ``<results_dir>/mlruns``) or ``wandb[:DIR]`` (default ``<results_dir>/wandb``);
    with ``background`` a :class:`~bench.integrations.background.Deferred` writer process."""
    kind = spec.partition(":")[0].strip().lower()
    if background and kind in KINDS:
        from bench.integrations.background import Deferred

        return Deferred(spec, results_dir)
    return make_tracker(spec, results_dir)


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


def log_run(log: str | Tracker | Sequence[str | Tracker], store: Store, run_id: str, *, step: int | None = None,
            config: RunConfig | None = None, crops: int = 2) -> None:
    """Send run ``run_id`` to the trackers in ``log`` at ``step`` (trackers given as text are
    opened beside the store and closed again)."""
    from bench.integrations.background import Deferred, Job, rebuildable

    trackers, opened = open_trackers(log, Path(store.path).parent)
    try:
        # one background tracker alone recomputes the crops of registered codecs itself: not on this process's time
        remote = len(trackers) == 1 and isinstance(trackers[0], Deferred) and crops > 0 and rebuildable(config)
        images = reconstruction_crops(config, store, run_id, per_codec=crops) \
            if config is not None and crops > 0 and not remote else {}
        data = None
        for tracker in trackers:
            if isinstance(tracker, Deferred):  # reads the run back from the store in its own process
                tracker.send(Job(str(Path(store.path).resolve()), store.run(run_id)["run_id"], int(step or 0), images,
                                 config if remote else None, crops if remote else 0))
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
