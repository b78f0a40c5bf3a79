"""The public Python API: evaluate codecs on a dataset and read the results back.

    from bench import evaluate, load_results, summary

    rows = evaluate(["jpeg", my_codec], "demo", metrics=["psnr"], limit=2)   # one row per image × codec × rate
    table = summary(run=rows["run_id"].iloc[0])                               # per codec × rate point

``evaluate`` takes registered codec names, :class:`~bench.codecs.base.Codec` instances
built in the caller's process **and** live ``torch.nn.Module`` s with CompressAI's
``compress`` / ``decompress`` (wrapped by :func:`bench.codecs.from_module`, evaluated on a deep
copy). It uses the same store, caches, resume and trackers as ``bench run`` (which is a thin
layer over :func:`run`). A codec instance is identified for caching by what it declares: its
``name``, ``version`` and ``describe()`` (params, ``checkpoint_sha256``); when it holds
``nn.Module`` s, also by the sha256 of their parameters and buffers at the call, computed here
(a ``version`` alone never makes an in-memory model cacheable). An instance that declares no
identity (no ``version`` of its own and no checkpoint hash) is never cached across calls: each
call makes a new run and skips the content cache, with one warning per codec name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .codecs.base import Codec
from .errors import ConfigError
from .identity import UncachedCodecWarning, declares_identity, scoped

if TYPE_CHECKING:  # pandas and the runner are imported when called: `import bench` stays cheap
    import pandas as pd

    from bench.execution.executor import Executor
    from bench.execution.runner import RunConfig
    from bench.integrations.trackers import Tracker
    from bench.storage.store import Store

    from .datasets.base import Dataset

__all__ = ["UncachedCodecWarning", "declares_identity", "evaluate", "fetch", "load_results", "run", "summary"]

CodecLike = str | Codec | Any  # Any: a torch.nn.Module (see bench.codecs.module)
StoreLike = Union["Store", str, Path, None]
LogLike = Union[str, "Tracker", Sequence[Union[str, "Tracker"]], None]


def _rate_text(value: Any) -> str:
    """A rate value as the text a rate knob parses (a pair ``(0.4, 0.6)`` → ``"0.4:0.6"``)."""
    if isinstance(value, (tuple, list)):
        return ":".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def _rates(rates: Mapping[str, Sequence[Any]] | Sequence[Any] | None) -> dict[str, list[str]]:
    if rates is None:
        return {}
    if isinstance(rates, Mapping):
        return {str(k): [_rate_text(v) for v in vs] for k, vs in rates.items()}
    return {"*": [_rate_text(v) for v in rates]}


def _names(value: str | Sequence[Any]) -> list[Any]:
    return [t.strip() for t in value.split(",") if t.strip()] if isinstance(value, str) else list(value)


def default_store_path() -> Path:
    """``$BENCH_RESULTS/bench.sqlite`` (default ``results/bench.sqlite``), as for the CLI."""
    return Path(os.environ.get("BENCH_RESULTS", "results")) / "bench.sqlite"


def open_store(store: StoreLike, *, readonly: bool = False) -> tuple[Store, bool]:
    """The store for ``store`` (a Store, a .sqlite path, a results folder or None) and whether
    the caller owns it (must close it); ``readonly`` opens an existing file for reading only."""
    from bench.storage.store import Store

    if isinstance(store, Store):
        return store, False
    path = default_store_path() if store is None else Path(store)
    if path.suffix not in (".sqlite", ".db", ".sqlite3"):
        path = path / "bench.sqlite"
    return Store(path, readonly=readonly), True


def _folder(dataset: Any, params: Mapping[str, Any] | None) -> tuple[Any, Mapping[str, Any] | None]:
    """A path to a folder of images given as the dataset → the ``folder`` dataset at that root."""
    if not isinstance(dataset, (str, Path)):
        return dataset, params
    text = str(dataset)
    pathlike = isinstance(dataset, Path) or "/" in text or os.sep in text or text in (".", "..")
    if pathlike or Path(text).expanduser().is_dir():
        from bench.registry import catalog

        if text not in catalog.registry("dataset").names():
            if not Path(text).expanduser().is_dir():
                raise ConfigError(f"dataset {str(dataset)!r} is neither a registered name nor a folder",
                                  "give an existing folder of images or a name from `bench list datasets`")
            return "folder", {**(params or {}), "root": str(Path(dataset).expanduser().resolve())}
    return dataset, params


def make_config(codecs: CodecLike | Sequence[CodecLike], dataset: str | Dataset, *,
                metrics: str | Sequence[str] = "all",
                rates: Mapping[str, Sequence[Any]] | Sequence[Any] | None = None, limit: int | None = None,
                protocol: Any = None, split: str | None = None, tag: str | None = None,
                params: Mapping[str, Mapping[str, Any]] | None = None,
                dataset_params: Mapping[str, Any] | None = None,
                metric_params: Mapping[str, Mapping[str, Any]] | None = None, weights_dir: str | None = None,
                allow_random_weights: bool = False, device: str | None = None, batch_size: int = 8,
                workers: int | None = None, use_cache: bool = True, retry_failed: bool = False,
                keep_reconstructions: bool = False, semantics: str | Mapping[str, Any] = "ground-truth",
                timeout: float | None = None) -> RunConfig:
    """The :class:`~bench.execution.runner.RunConfig` of an :func:`evaluate` call (see there)."""
    from bench.execution.guard import check_timeout
    from bench.execution.runner import RunConfig

    dataset, dataset_params = _folder(dataset, dataset_params)
    ds_params = dict(dataset_params or {})
    if split is not None and not isinstance(dataset, str):
        raise ConfigError(f"split={split!r} needs a registered dataset name, got a {type(dataset).__name__}",
                          "build the Dataset instance with its split, or pass the dataset's name")
    if split is not None:
        if ds_params.get("split", split) != split:
            raise ConfigError(f"split={split!r} and dataset_params['split']={ds_params['split']!r} differ",
                              "give the split once")
        ds_params["split"] = str(split)
    check_timeout(timeout, "timeout")  # before a store is opened

    if isinstance(semantics, Mapping):
        segmenter: dict[str, Any] | None = dict(semantics)
    elif semantics == "segmenter":
        segmenter = {}
    elif semantics == "ground-truth":
        segmenter = None
    else:
        raise ConfigError(f"semantics={semantics!r} is not 'ground-truth', 'segmenter' or a segmenter dict",
                          "e.g. semantics={'name': 'espnetv2'}")
    return RunConfig(
        dataset=dataset,
        codecs=_names(codecs) if isinstance(codecs, (str, list, tuple)) else [codecs],  # type: ignore[list-item]  # a lone Codec instance is wrapped in a list; mypy cannot narrow the Sequence branch
        metrics=_names(metrics),
        rates=_rates(rates),
        limit=limit,
        dataset_params=ds_params,
        codec_params={k: dict(v) for k, v in (params or {}).items()},
        metric_params={k: dict(v) for k, v in (metric_params or {}).items()},
        metric_options={"weights_dir": weights_dir, "allow_random_weights": allow_random_weights, "device": device},
        semantics_segmenter=segmenter,
        retry_failed=retry_failed,
        tag=tag,
        workers=workers,
        batch_size=batch_size,
        use_cache=use_cache,
        keep_reconstructions=keep_reconstructions,
        protocol=protocol,
        timeout=timeout,
    )


def run(config: RunConfig, store: Store, *, log: LogLike = None, step: int | None = None,
        progress: bool = False, on_skip: Callable[[str, str], None] | None = None, executor: Executor | None = None,
        crops: int = 2) -> str:
    """Run (or resume) ``config`` into ``store``, then send the results to the trackers in
    ``log`` (``"tensorboard[:DIR]"``, ``"mlflow[:URI]"`` or :class:`~bench.integrations.trackers.Tracker`
    objects) at ``step``; returns the run id. This is what ``bench run`` calls."""
    from dataclasses import replace

    from bench.execution.runner import execute
    from bench.integrations.trackers import log_run, open_trackers
    from bench.report.summary import summarise

    codecs, uncached = scoped(config.codecs)
    config = replace(config, codecs=codecs, use_cache=config.use_cache and not uncached)
    # trackers are opened first: an unknown --log or a missing package fails before the run, not after it
    trackers, opened = open_trackers(log, Path(store.path).parent) if log else ([], [])
    try:
        run_id = execute(config, store, progress=progress, on_skip=on_skip, executor=executor)
        summarise(store, run_id)  # stored with the run: report, figures, compare and trackers read it back
        if trackers:
            log_run(trackers, store, run_id, step=step, config=config, crops=crops)
    except BaseException:
        for tracker in opened:  # the run's own error is the one to see, not a tracker's on closing
            with contextlib.suppress(Exception):
                tracker.close()
        raise
    errors = []
    for tracker in opened:  # a background tracker waits here until its writes are on disk
        try:
            tracker.close()
        except Exception as err:  # noqa: BLE001 - every tracker is closed, then the first error raised
            errors.append(err)
    if errors:
        raise errors[0]
    return run_id


def evaluate(codecs: CodecLike | Sequence[CodecLike] | None = None, dataset: str | Dataset | None = None, *,
             codec: CodecLike | None = None, metrics: str | Sequence[str] = "all", rates: Mapping[str, Sequence[Any]] | Sequence[Any] | None = None,
             limit: int | None = None, protocol: Any = None, split: str | None = None, store: StoreLike = None,
             tag: str | None = None,
             params: Mapping[str, Mapping[str, Any]] | None = None, dataset_params: Mapping[str, Any] | None = None,
             metric_params: Mapping[str, Mapping[str, Any]] | None = None, weights_dir: str | None = None,
             allow_random_weights: bool = False, device: str | None = None, batch_size: int = 8,
             workers: int | None = None, use_cache: bool = True, retry_failed: bool = False,
             keep_reconstructions: bool = False, semantics: str | Mapping[str, Any] = "ground-truth",
             log: LogLike = None, step: int | None = None, progress: bool = False,
             timeout: float | None = None) -> pd.DataFrame:
    """Evaluate ``codecs`` (or ``codec``) on ``dataset``; one tidy row per image × codec × rate.

    ``codecs``: registered names (``"jpeg,webp"`` or a list), ``Codec`` instances, ``nn.Module`` s
    with CompressAI's ``compress`` / ``decompress`` (see :func:`bench.codecs.from_module`), or a mix.
    ``codec``: one of those, by keyword — ``evaluate(codec=model, dataset="kodak", …)`` for a model
    being trained; give exactly one of ``codecs`` and ``codec`` (else a
    :class:`~bench.errors.ConfigError`).
    ``dataset``: a registered name, a folder of images (a path: the ``folder`` dataset at that
    root) or a :class:`~bench.datasets.base.Dataset`.
    ``metrics``: names or ``"all"``; ``rates``: values for every codec (a list) or per codec
    name (a dict), as text or numbers (a pair → ``"m_x:m_s"``); ``limit``: the first N images;
    ``protocol``: a named protocol of the dataset's card; ``split``: the dataset split (e.g.
    ``"val"``, ``"train"``; default the card's), as ``--split``;
    ``params`` / ``dataset_params`` / ``metric_params``: as ``--param`` on the CLI;
    ``store``: a :class:`~bench.storage.store.Store`, a ``.sqlite`` file or a results folder (default
    ``results/bench.sqlite``); ``tag`` makes a separate run (codecs shown as ``name@tag``);
    ``log`` / ``step``: trackers to send the results to, and the step they are logged at;
    ``timeout``: seconds one coding may take before it is a failed row (default: the codec
    card's ``timeout:``, else 600; 0: no limit). A coding in a worker process is stopped by
    killing the worker; one in this process (a ``Codec`` instance that is not
    ``parallel_safe``) runs in a thread that is abandoned (see :mod:`bench.execution.guard`).

    Columns are those of ``bench export`` (:func:`bench.report.export.tidy_rows`): run_id, codec,
    rate, image_id, status, error, height, width, bpp, bpp_<part>, metric values (dB, [0,1]
    … as in the report), seconds_<stage>, bytes_<part>.
    """
    from bench.report.export import tidy_rows

    if (codecs is None) == (codec is None):
        raise ConfigError("evaluate() got " + ("both codecs= and codec=" if codec is not None else "no codec"),
                          "give one codec as codec=… (a name, a Codec or an nn.Module) or several as codecs=[…]")
    if isinstance(codec, (list, tuple)):
        raise ConfigError("evaluate(codec=…) takes one codec, got a list", "give a list as codecs=[…]")
    if dataset is None:
        raise ConfigError("evaluate() got no dataset", "give dataset=… (a registered name, a folder or a Dataset)")
    config = make_config([codec] if codec is not None else codecs, dataset, metrics=metrics, rates=rates, limit=limit, protocol=protocol, split=split,
                         tag=tag,
                         params=params, dataset_params=dataset_params, metric_params=metric_params,
                         weights_dir=weights_dir, allow_random_weights=allow_random_weights, device=device,
                         batch_size=batch_size, workers=workers, use_cache=use_cache, retry_failed=retry_failed,
                         keep_reconstructions=keep_reconstructions, semantics=semantics, timeout=timeout)
    st, owned = open_store(store)
    try:
        run_id = run(config, st, log=log, step=step, progress=progress)
        return tidy_rows(st, run_id)
    finally:
        if owned:
            st.close()


def _select(st: Store, run: str | Sequence[str] | None, codec: str | None, tag: str | None,
            dataset: str | None) -> list[str]:
    if run is not None:
        ids = [run] if isinstance(run, str) else list(run)
        return [st.run(r)["run_id"] for r in ids]
    out = []
    for r in st.runs():
        meta, cfg = r["meta"], r["config"]
        if (dataset and cfg.get("dataset") != dataset) or (tag and meta.get("tag") != tag) \
                or (codec and codec not in (meta.get("codecs") or {})):
            continue
        out.append(r["run_id"])
    return out


def _frames(store: StoreLike, run: str | Sequence[str] | None, codec: str | None, tag: str | None,
            dataset: str | None, make: Callable[[Store, str], pd.DataFrame]) -> pd.DataFrame:
    import pandas as pd

    st, owned = open_store(store, readonly=True)
    try:
        frames = []
        for run_id in _select(st, run, codec, tag, dataset):
            df = make(st, run_id)
            if codec:
                df = df[df["codec"] == codec]
            frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    finally:
        if owned:
            st.close()


def load_results(store: StoreLike = None, run: str | Sequence[str] | None = None, *, codec: str | None = None,
                 tag: str | None = None, dataset: str | None = None) -> pd.DataFrame:
    """Tidy rows (the columns of :func:`evaluate`) of ``run`` (an id, a unique prefix,
    ``"latest"`` or a list), or of every run in ``store`` matching ``codec`` / ``tag`` /
    ``dataset``."""
    from bench.report.export import tidy_rows

    return _frames(store, run, codec, tag, dataset, tidy_rows)


def summary(store: StoreLike = None, run: str | Sequence[str] | None = "latest", *, codec: str | None = None,
            tag: str | None = None, dataset: str | None = None) -> pd.DataFrame:
    """The report's table: one row per codec × rate point (mean bpp, dataset-level and
    mean metric values, n_ok …) with a ``run_id`` column; ``run=None`` takes every run
    matching the filters."""
    from .report.summary import summarise

    def one(st: Store, run_id: str) -> pd.DataFrame:
        df = summarise(st, run_id)
        df.insert(0, "run_id", run_id)
        return df

    return _frames(store, run, codec, tag, dataset, one)


def fetch(names: str | Sequence[str], *, mirror: str | None = None, from_dir: str | Path | None = None,
          progress: bool = True) -> list[Path]:
    """Download (or import from ``from_dir``) registry entries into ``$BENCH_DATA_DIR``, hash-checked:
    entry names, groups (``espnetv2``, ``compressai``, …), ``weights``, ``datasets`` or ``all``
    (``bench fetch --list`` lists them). Returns the local paths (weights files, dataset folders).

    ``mirror``: a base URL holding every file under its registry file name (default
    ``$BENCH_MIRROR``). Raises :class:`~bench.errors.UnavailableError` subclasses (offline,
    HTTP error, wrong hash) and :class:`~bench.errors.OutputError` (disk full)."""
    from bench.runtime import fetch as F

    saved = os.environ.get("BENCH_MIRROR")
    if mirror:
        os.environ["BENCH_MIRROR"] = mirror
    try:
        return F.fetch(_names(names), progress=progress, from_dir=Path(from_dir) if from_dir else None)
    finally:
        if mirror:
            if saved is None:
                os.environ.pop("BENCH_MIRROR", None)
            else:
                os.environ["BENCH_MIRROR"] = saved
