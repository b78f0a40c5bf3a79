"""A PyTorch Lightning callback that evaluates the model being trained with the harness.

    from lightning.pytorch.callbacks import ModelCheckpoint
    from bench.integrations.lightning import BenchCallback

    bench_cb = BenchCallback(lambda module: module.net, "kodak", metrics=["psnr"], limit=8,
                             log="mlflow")                  # module.net: a CompressAI model
    best = ModelCheckpoint(monitor="bench/factorizedprior/psnr/rate_live", mode="max")
    trainer = lightning.Trainer(callbacks=[bench_cb, best])

When: at ``on_validation_epoch_end`` (not during the sanity check) and, in an epoch where
validation did not run (``limit_val_batches=0``, no val loader, ``check_val_every_n_epoch``),
at ``on_train_epoch_end`` (``when="auto"``; ``"validation"`` / ``"train"`` pick one hook);
every ``every_n_epochs`` epochs (``(epoch + 1) % n == 0``), at most once per epoch. A
callback that never evaluated in a whole ``fit`` warns once (``NeverEvaluatedWarning``).

What: ``codec_factory(copy)`` — ``copy`` a deep copy of the LightningModule (eval mode, no
gradients, no trainer; the live module and its buffers are never touched, so a factory may call
CompressAI's ``update(force=True)``) — returns a codec, an ``nn.Module`` with CompressAI's
``compress`` / ``decompress`` (see :func:`bench.codecs.from_module`) or a list of them; without a
factory the module itself is the codec. The evaluation runs on global rank 0 only, through
:func:`bench.evaluate` (a run tagged ``step=<step>`` in ``store``; results keyed by the model's
state hash); its per-codec × rate-point values are broadcast to every rank and logged there
through ``pl_module.log`` as ``<prefix>/<codec>/<metric>/rate_<rate>`` (bpp included), so
``ModelCheckpoint`` / ``EarlyStopping`` can monitor them and every rank sees the same values.
``images`` fixes the evaluated image ids (else the first ``limit``); ``time_budget`` (seconds
per evaluation) measures one image at the first evaluation and keeps the first images that fit,
the same ones at every later epoch. ``log``: bench trackers (``"mlflow"``, ``"wandb"`` …),
opened once per ``fit``: one tracker run per training, one point per evaluation at the step
Lightning's own loggers use for the values logged in that hook
(:func:`lightning_step`: one less than ``global_step`` at the end of an epoch), so both curves
share an x axis. The store's run is
tagged ``step=<global_step>``, the step in ModelCheckpoint's file names.
Needs the optional ``lightning`` (or ``pytorch-lightning``) package.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UnavailableError

WHEN = ("auto", "validation", "train")


class NeverEvaluatedWarning(UserWarning):
    """A BenchCallback ran a whole ``fit`` without evaluating once."""


def _callback_base() -> type:
    try:
        from lightning.pytorch.callbacks import Callback
    except ImportError:
        try:
            from pytorch_lightning.callbacks import Callback
        except ImportError:
            raise UnavailableError("BenchCallback needs PyTorch Lightning, which is not installed",
                                   "pip install lightning   (or pip install 'semcodec-bench[lightning]')") from None
    return Callback


def results_dir(store: Any) -> Path:
    """The folder of a store given as for :func:`bench.evaluate` (trackers default beside it)."""
    from bench.api import default_store_path
    from bench.storage.store import Store

    if isinstance(store, Store):
        return Path(store.path).parent
    path = default_store_path() if store is None else Path(store)
    return path.parent if path.suffix in (".sqlite", ".db", ".sqlite3") else path


def lightning_step(trainer: Any, hook: str = "validation") -> int:
    """The step Lightning's loggers get the values logged in ``hook`` at: ``_batches_that_stepped``
    at validation end, one less at train epoch end (Lightning's fit loop logs epoch metrics so)."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    step = int(getattr(loop, "_batches_that_stepped", trainer.global_step))
    return step - 1 if hook == "train" and loop is not None else step


class BenchCallback(_callback_base()):  # type: ignore[misc]  # the base class is chosen at import: lightning's or pytorch_lightning's Callback
    """Evaluate ``codec_factory(<copy of pl_module>)`` on ``dataset`` during training (see the module).

    ``every_n_epochs``, ``when`` (auto | validation | train), ``images`` (ids), ``limit``,
    ``time_budget`` (seconds), ``prefix`` (of the logged names), ``log`` (bench trackers);
    ``metrics``, ``rates``, ``store``, ``dataset_params`` and ``**evaluate_kwargs``: as for
    :func:`bench.evaluate`. ``results`` holds each evaluation's tidy rows by step,
    ``seconds`` its wall time.
    """

    def __init__(self, codec_factory: Callable[[Any], Any] | None = None, dataset: Any = "demo", *,
                 every_n_epochs: int = 1, when: str = "auto", metrics: str | Sequence[str] = ("psnr",),
                 rates: Any = None, limit: int | None = None, images: Sequence[str] | None = None,
                 time_budget: float | None = None, store: Any = None, prefix: str = "bench", log: Any = None,
                 dataset_params: dict[str, Any] | None = None, **evaluate_kwargs: Any) -> None:
        super().__init__()
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ConfigError(f"every_n_epochs={every_n_epochs} is not a positive integer", "use 1 or more")
        if when not in WHEN:
            raise ConfigError(f"when={when!r} is not one of {', '.join(WHEN)}",
                              "auto: at validation end, or at train epoch end when validation is off")
        if time_budget is not None and not time_budget > 0:
            raise ConfigError(f"time_budget={time_budget!r} is not a positive number of seconds", "e.g. 60")
        self.codec_factory = codec_factory
        self.dataset = dataset
        self.dataset_params = dict(dataset_params or {})
        self.every_n_epochs = every_n_epochs
        self.when = when
        self.metrics = metrics
        self.rates = rates
        self.limit = limit
        self.images = list(images) if images is not None else None
        self.time_budget = time_budget
        self.store = store
        self.prefix = prefix
        self.trackers = log
        self.evaluate_kwargs = evaluate_kwargs
        self.results: dict[int, Any] = {}
        self.seconds: dict[int, float] = {}
        self._subset: Any = None
        self._epochs: set[int] = set()
        self._open: tuple[list[Any], list[Any]] = ([], [])
        self._warned = False

    # -- Lightning hooks ---------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:  # noqa: D102
        if stage == "fit":
            self._epochs = set()
            if self.trackers and trainer.is_global_zero and not self._open[0]:
                from bench.integrations.trackers import open_trackers

                self._open = open_trackers(self.trackers, results_dir(self.store))

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:  # noqa: D102
        if stage == "fit":
            _trackers, opened = self._open
            self._open = ([], [])
            for tracker in opened:
                tracker.close()

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:  # noqa: D102
        if not trainer.sanity_checking and self.when in ("auto", "validation"):
            self._evaluate(trainer, pl_module, "validation")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:  # noqa: D102
        if self.when == "train" or (self.when == "auto" and trainer.current_epoch not in self._epochs):
            self._evaluate(trainer, pl_module, "train")

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:  # noqa: D102
        if not self._epochs and not self._warned and trainer.is_global_zero:
            self._warned = True
            epochs = trainer.current_epoch + 1
            why = (f"every_n_epochs={self.every_n_epochs} but the fit ran {epochs} epoch(s)"
                   if epochs < self.every_n_epochs else f"when={self.when!r} and that hook never ran "
                   "(validation off or not reached?)")
            warnings.warn(f"BenchCallback never evaluated during this fit: {why}; use when='auto' (evaluates at "
                          "train epoch end when validation is off) or a smaller every_n_epochs",
                          NeverEvaluatedWarning, stacklevel=2)

    # -- the evaluation ----------------------------------------------------------------------
    def _evaluate(self, trainer: Any, pl_module: Any, hook: str) -> None:
        epoch = trainer.current_epoch
        if epoch in self._epochs or (epoch + 1) % self.every_n_epochs:
            return
        self._epochs.add(epoch)
        outcome: tuple[str, Any] = ("ok", {})
        if trainer.is_global_zero:
            try:
                outcome = ("ok", self.evaluate(pl_module, int(trainer.global_step), lightning_step(trainer, hook)))
            except Exception as err:  # noqa: BLE001 - told to every rank below, then raised
                outcome = ("error", err)
        shared = trainer.strategy.broadcast(outcome if outcome[0] == "ok" else ("error", repr(outcome[1])), src=0)
        if outcome[0] == "error":
            raise outcome[1]
        if shared[0] == "error":
            raise RuntimeError(f"BenchCallback: the evaluation on rank 0 failed: {shared[1]}")
        for key, value in shared[1].items():
            pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=False, logger=bool(trainer.loggers))

    def evaluate(self, pl_module: Any, step: int, log_step: int | None = None) -> dict[str, float]:
        """Evaluate a deep copy of ``pl_module`` now (this process only) as a run tagged
        ``step=<step>`` (the global step, as in checkpoint names), sent to the trackers at
        ``log_step`` (default ``step``); the logged ``name → value`` scalars."""
        import torch

        from bench.api import evaluate
        from bench.codecs.module import detached_copy

        model = detached_copy(pl_module)
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            codecs = self.codec_factory(model) if self.codec_factory is not None else model
            dataset, limit = self._dataset(codecs)
            rows = evaluate(codecs, dataset, metrics=self.metrics, rates=self.rates, limit=limit, store=self.store,
                            tag=f"step={step}", log=self._open[0] or None,
                            step=step if log_step is None else log_step,
                            dataset_params=None if dataset is not self.dataset else self.dataset_params,
                            **self.evaluate_kwargs)
        self.seconds[step] = time.perf_counter() - start
        self.results[step] = rows
        return self.scalars(rows["run_id"].iloc[0]) if len(rows) else {}

    def _dataset(self, codecs: Any) -> tuple[Any, int | None]:
        """The dataset and limit of every evaluation: as given, or the fixed subset (``images``,
        or the first images that fit ``time_budget``, chosen at the first evaluation)."""
        if self.images is None and self.time_budget is None:
            return self.dataset, self.limit
        if self._subset is None:
            from bench.datasets.subset import Subset

            base = self._base_dataset()
            ids = self.images or base.ids()[: self.limit]
            if self.time_budget is not None:
                ids = ids[: self._fit_budget(codecs, Subset(base, ids[:1]), len(ids))]
            self._subset = Subset(base, ids)
        return self._subset, None

    def _base_dataset(self) -> Any:
        from bench.api import _folder
        from bench.datasets.base import Dataset
        from bench.registry import catalog

        if isinstance(self.dataset, Dataset):
            return self.dataset
        name, params = _folder(self.dataset, self.dataset_params)
        return catalog.make_dataset(name, **dict(params or {}))

    def _fit_budget(self, codecs: Any, first: Any, available: int) -> int:
        """How many images fit ``time_budget``: one image is evaluated in a scratch store; its
        per-image seconds (coding + metrics) and the call's fixed cost give the count."""
        import tempfile

        from bench.api import evaluate

        with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
            start = time.perf_counter()
            rows = evaluate(codecs, first, metrics=self.metrics, rates=self.rates, store=tmp, **self.evaluate_kwargs)
            total = time.perf_counter() - start
        per_image = float(rows.filter(like="seconds_").sum(axis=1).sum()) or total
        fixed = max(total - per_image, 0.0)
        n = max(1, min(available, math.floor((self.time_budget - fixed) / per_image)))  # type: ignore[operator]  # time_budget is set: this runs only with a budget
        if n < available:
            warnings.warn(f"BenchCallback: time_budget={self.time_budget:g} s fits {n} of {available} images "
                          f"({per_image:.2f} s per image + {fixed:.2f} s per call); every evaluation uses "
                          "those first {n}".replace("{n}", str(n)), stacklevel=3)
        return n

    def scalars(self, run_id: str) -> dict[str, float]:
        """``<prefix>/<codec>/<metric>/rate_<rate>`` → the run's per-rate-point bpp and metric values."""
        from bench.api import open_store
        from bench.integrations.trackers import payload

        st, owned = open_store(self.store, readonly=True)
        try:
            data = payload(st, run_id, crops=0, figures=False)
        finally:
            if owned:
                st.close()
        return {f"{self.prefix}/{k}": v for k, v in data.scalars.items()}
