"""A PyTorch Lightning callback that evaluates the module being trained with the harness.

    from bench.integrations.lightning import BenchCallback

    def codec_factory(module):            # a few lines: wrap the module as a bench Codec
        return MyCodec(module)            # declare `version` / describe() to enable caching

    trainer = lightning.Trainer(callbacks=[BenchCallback(codec_factory, "cityscapes",
                                                         every_n_epochs=5, metrics=["psnr", "lpips"], limit=50)])

At the end of validation (every ``every_n_epochs`` epochs; not during the sanity check) the
callback calls :func:`bench.api.evaluate` on ``codec_factory(pl_module)`` (in eval mode, without
gradients), writes the rows to the store as a run tagged ``step=<global_step>``, and logs the
per-codec × rate-point means (``bench/<codec>/<metric>/rate_<rate>``) through the trainer's
loggers (``pl_module.log_dict``-style, at the trainer's global step). ``log=`` also sends them to
bench's own trackers. Needs the optional ``lightning`` (or ``pytorch-lightning``) package.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..errors import UnavailableError


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


class BenchCallback(_callback_base()):  # type: ignore[misc]  # the base class is chosen at import: lightning's or pytorch_lightning's Callback
    """Evaluate ``codec_factory(pl_module)`` on ``dataset`` at validation end.

    ``every_n_epochs``: evaluate when ``(epoch + 1) % every_n_epochs == 0``; ``metrics``,
    ``rates``, ``limit``, ``store``, ``params`` …: as for :func:`bench.evaluate`;
    ``log``: extra bench trackers. ``results`` holds each evaluation's tidy rows (a DataFrame) by
    global step.
    """

    def __init__(self, codec_factory: Callable[[Any], Any], dataset: Any, *, every_n_epochs: int = 1,
                 metrics: str | Sequence[str] = ("psnr",), rates: Any = None, limit: int | None = None,
                 store: Any = None, prefix: str = "bench", log: Any = None, **evaluate_kwargs: Any) -> None:
        super().__init__()
        if every_n_epochs < 1:
            from ..errors import ConfigError

            raise ConfigError(f"every_n_epochs={every_n_epochs} is not a positive integer", "use 1 or more")
        self.codec_factory = codec_factory
        self.dataset = dataset
        self.every_n_epochs = every_n_epochs
        self.metrics = metrics
        self.rates = rates
        self.limit = limit
        self.store = store
        self.prefix = prefix
        self.trackers = log
        self.evaluate_kwargs = evaluate_kwargs
        self.results: dict[int, Any] = {}

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:  # noqa: D102 (Lightning hook)
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        if not getattr(trainer, "is_global_zero", True):
            return
        import torch

        from ..api import evaluate

        step = int(trainer.global_step)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                rows = evaluate(self.codec_factory(pl_module), self.dataset, metrics=self.metrics, rates=self.rates,
                                limit=self.limit, store=self.store, tag=f"step={step}", log=self.trackers, step=step,
                                **self.evaluate_kwargs)
        finally:
            pl_module.train(was_training)
        values = self.scalars(rows["run_id"].iloc[0]) if len(rows) else {}
        self.results[step] = rows
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)

    def scalars(self, run_id: str) -> dict[str, float]:
        """``<prefix>/<codec>/<metric>/rate_<rate>`` → the run's per-rate-point bpp and metric values."""
        from ..api import open_store
        from bench.integrations.trackers import payload

        st, owned = open_store(self.store, readonly=True)
        try:
            data = payload(st, run_id, crops=0, figures=False)
        finally:
            if owned:
                st.close()
        return {f"{self.prefix}/{k}": v for k, v in data.scalars.items()}
