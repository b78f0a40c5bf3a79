"""Plan and execute codec × rate × image, writing each row to the store as it finishes.

The same command run twice reuses the same run id: rows already stored are skipped,
so a killed run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.analysis.dataset_level import compute_run
from bench.codecs.base import Codec, unmet
from bench.datasets import presets
from bench.datasets.base import Dataset, Sample
from bench.errors import AllRowsFailedError, ConfigError, UnavailableError
from bench.execution import provenance
from bench.execution.executor import Executor, progress_hook, threads_meta
from bench.execution.local import LocalExecutor
from bench.execution.pipeline import (  # noqa: F401 (semantics_for re-exported)
    SegmenterSemantics,
    base_row,
    code,
    measure,
    semantics_for,
)
from bench.execution.progress import RunProgress
from bench.execution.resultcache import ResultCache
from bench.execution.settings import DEFAULT_BATCH_SIZE
from bench.metrics.base import Metric
from bench.registry import catalog
from bench.runtime.devices import resolve_device
from bench.runtime.fetch import fetch_missing
from bench.runtime.threads import is_network
from bench.storage.store import Row, Store

log = logging.getLogger("bench")

DEFAULT_STORE = Path("results") / "bench.sqlite"


@dataclass
class RunConfig:
    """What ``bench run`` was asked to do.

    ``rates`` maps a codec name to rate values (text, parsed by the codec's knob); a
    codec not in it uses its card's or its default rate points.
    """

    dataset: str | Dataset  # a registered name, or a Dataset built by the caller
    codecs: list[str | Codec]  # registered names and/or Codec instances built by the caller
    metrics: list[str] = field(default_factory=lambda: ["all"])
    rates: dict[str, list[str]] = field(default_factory=dict)
    limit: int | None = None
    dataset_params: dict[str, Any] = field(default_factory=dict)
    codec_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric_options: dict[str, Any] = field(default_factory=dict)  # weights_dir, allow_random_weights, device
    metric_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. {"fid": {"patch": 256}}
    retry_failed: bool = False
    tag: str | None = None
    workers: int | None = None  # codec worker processes (None: one per core)
    batch_size: int = DEFAULT_BATCH_SIZE  # metric-network batch
    use_cache: bool = True  # reuse coded / metric results by content across runs
    keep_reconstructions: bool = False  # store reconstructions (PNG) so new metrics need no re-encode
    # where semantic codecs' senders get the label map: None = the dataset's ground truth, or
    # {"name": "espnetv2", **params} = that segmenter on the original (recorded as the source;
    # {} = the default segmenter, ESPNetv2)
    semantics_segmenter: dict[str, Any] | None = None
    # a named protocol of the dataset's card (bench.datasets.presets), e.g. "sqgan"; None =
    # the card's params as they are (recorded as protocol "card")
    protocol: str | None = None
    # seconds one coding (encode + decode of one image) may take before it is a failed row; None:
    # each codec card's `timeout:` or bench.execution.guard.DEFAULT_TIMEOUT_S; 0: no limit
    timeout: float | None = None


def apply_protocol(config: RunConfig) -> tuple[RunConfig, dict[str, Any]]:
    """``config`` with its protocol preset merged in (dataset params, mIoU averaging,
    senders' label source) and the preset's record for the run metadata."""
    if isinstance(config.dataset, Dataset) and config.protocol not in (None, "", presets.CARD):
        raise ConfigError(f"protocol {config.protocol!r} needs a registered dataset, got a "
                          f"{type(config.dataset).__name__} instance", "pass the dataset's name, or no protocol")
    preset = presets.resolve(config.dataset.name if isinstance(config.dataset, Dataset) else config.dataset,
                             config.protocol)
    applied = presets.apply(preset, config.dataset_params, config.metric_params, config.semantics_segmenter)
    merged = dataclasses.replace(config, dataset_params=applied.dataset_params, metric_params=applied.metric_params,
                                 semantics_segmenter=applied.semantics_segmenter)
    return merged, applied.record


@dataclass
class Plan:
    """The resolved work: components, rate points, image ids and what is skipped."""

    dataset: Dataset
    codecs: list[Codec]
    rates: dict[str, list[Any]]
    metrics: list[Metric]
    ids: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (component, reason)

    @property
    def total(self) -> int:
        return len(self.ids) * sum(len(r) for r in self.rates.values())


def _reason(reqs: Sequence[Any]) -> str:
    from bench.runtime.fetch.registry import command_for, names_in

    text = "; ".join(f"{r.kind} {r.name} missing: {r.detail}" for r in reqs)
    names = [n for r in reqs if r.kind == "weights" for n in names_in(f"{r.name} {r.detail}")]
    return f"{text} (get them: {command_for(names)})" if names else text


def _resolve(kind: str, names: Sequence[str], build: Callable[[str], Any], fix: str) -> tuple[list[Any], list[tuple[str, str]]]:
    """Build the named components of ``kind``. ``all`` takes every registered one (but those
    whose card says ``skip_in_all``) and skips the unavailable ones with a reason; an
    explicitly named unavailable component raises."""
    reg = catalog.registry(kind)
    explicit = [n for n in names if n != "all"]
    wanted = list(dict.fromkeys((reg.names() if "all" in names else []) + explicit))
    built, skipped = [], []
    for name in wanted:
        if name not in explicit and reg.get(name).card.get("skip_in_all"):
            continue
        try:
            obj = build(name)
            missing = unmet(obj)
            # weights in the fetch registry are downloaded now: for metrics, and for codecs named
            # explicitly (`--codecs all` does not pull the whole CompressAI zoo, ~GBs, implicitly)
            if missing and (kind == "metric" or name in explicit) and fetch_missing(missing):
                missing = unmet(obj)
            if missing:
                raise UnavailableError(f"{kind} {name!r} is not available: {_reason(missing)}", fix)
        except UnavailableError as err:
            if name in explicit:
                raise
            skipped.append((name, err.problem))
            continue
        built.append(obj)
    return built, skipped


def resolve_codecs(names: Sequence[str | Codec], params: dict[str, dict[str, Any]],
                   weights_dir: str | None = None) -> tuple[list[Codec], list[tuple[str, str]]]:
    """The codecs to run (see :func:`_resolve`); at least one. ``Codec`` instances among
    ``names`` (built in the caller's process) are used as they are, in order."""
    fix = "install what is missing, or see `bench list codecs`"
    instances = [c for c in names if isinstance(c, Codec)]
    for codec in instances:
        missing = unmet(codec)
        if missing:
            raise UnavailableError(f"codec {codec.name!r} is not available: {_reason(missing)}", fix)
    registered = [n for n in names if not isinstance(n, Codec)]
    codecs, skipped = _resolve("codec", registered,
                               lambda n: catalog.make_codec(n, weights_dir=weights_dir, **params.get(n, {})),
                               fix) if registered else ([], [])
    codecs = instances + codecs
    names_seen = [c.name for c in codecs]
    if len(set(names_seen)) < len(names_seen):
        raise ConfigError(f"two codecs have the same name in one run: {names_seen}", "give each codec its own name")
    if not codecs:
        raise ConfigError("no codec to run", "name codecs with --codecs (see `bench list codecs`)")
    return codecs, skipped


def resolve_metrics(names: Sequence[str], options: dict[str, Any] | None = None,
                    params: dict[str, dict[str, Any]] | None = None) -> tuple[list[Metric], list[tuple[str, str]]]:
    """The metrics to compute (see :func:`_resolve`); ``options`` go to every metric."""
    return _resolve("metric", names, lambda n: catalog.make_metric(n, **{**(options or {}), **(params or {}).get(n, {})}),
                    "see `bench doctor`")


def check_rate_names(rates: dict[str, Any], codecs: Sequence[str], skipped: Sequence[str] = ()) -> None:
    """Refuse rates for a codec that is not in the run (``rates={"jpegg": [50]}`` would silently
    run jpeg's default rates): an unknown name raises with suggestions, a registered one not run
    is a ConfigError. ``"*"`` (every codec) and codecs skipped as unavailable are accepted."""
    for name in rates:
        if name == "*" or name in codecs or name in skipped:
            continue
        catalog.registry("codec").get(name)  # UnknownNameError with close names
        raise ConfigError(f"rates are given for codec {name!r}, which is not in this run ({', '.join(codecs)})",
                          f"add {name} to the codecs, or fix the name in rates")


def make_plan(config: RunConfig) -> Plan:
    """Dataset, codecs, rates, metrics and image ids of ``config``; a device that is not on
    this machine, an empty dataset or no codec is a :class:`ConfigError` before any work."""
    resolve_device(config.metric_options.get("device"))
    dataset = config.dataset if isinstance(config.dataset, Dataset) else \
        catalog.make_dataset(config.dataset, **config.dataset_params)
    ids = dataset.ids()
    if config.limit is not None:
        ids = ids[: config.limit]
    if not ids:
        raise ConfigError(f"dataset {config.dataset!r} has no images", "check the dataset root and split")
    codecs, skipped = resolve_codecs(config.codecs, config.codec_params, config.metric_options.get("weights_dir"))
    check_rate_names(config.rates, [c.name for c in codecs], [n for n, _ in skipped])
    rates: dict[str, list[Any]] = {}
    for codec in codecs:
        asked = config.rates.get(codec.name) or config.rates.get("*")
        values = [codec.rate_knob.parse(str(v)) for v in asked] if asked else catalog.codec_rates(codec)
        rates[codec.name] = list({codec.rate_label(v): v for v in values}.values())  # "8,8" or "8,08": once
    # the metrics last: building them may download their networks' weights, never for a run refused above
    metrics, skipped_m = resolve_metrics(config.metrics, config.metric_options, config.metric_params)
    return Plan(dataset, codecs, rates, metrics, ids, skipped + skipped_m)


def sender_semantics(config: RunConfig) -> SegmenterSemantics | None:
    """The segmenter that gives semantic codecs their label map, when one is configured."""
    if config.semantics_segmenter is None:
        return None
    from bench.segmenters import make_segmenter

    params = dict(config.semantics_segmenter)
    name = params.pop("name", "espnetv2")
    options = {k: v for k, v in config.metric_options.items() if k in ("weights_dir", "allow_random_weights", "device")}
    segmenter = make_segmenter(name, **{**options, **params})
    missing = unmet(segmenter)
    if missing and fetch_missing(missing):
        missing = unmet(segmenter)
    if missing:
        raise UnavailableError(f"segmenter {name!r} for the senders' label maps is not available: {_reason(missing)}",
                               "give its weights (--weights-dir) or use the dataset's ground truth")
    return SegmenterSemantics(segmenter)


def run_caveats(plan: Plan, semantics: SegmenterSemantics | None = None) -> list[str]:
    """The caveats of a run's numbers (see :mod:`bench.report.caveats`): a segmenter (the mIoU
    metric's, or the senders') trained on another domain than the dataset's."""
    from bench.report.caveats import off_domain_caveat

    domain = getattr(plan.dataset, "domain", None)
    users = [(getattr(m, "segmenter", None), f"{m.name}") for m in plan.metrics]
    if semantics is not None:
        users.append((semantics.segmenter, "senders' label-map"))
    out: list[str] = []
    for seg, role in users:
        if seg is None:
            continue
        text = off_domain_caveat(getattr(seg, "card_name", seg.name), getattr(seg, "domain", None),
                                 plan.dataset.name, domain, role="mIoU" if role == "miou" else role)
        if text and text not in out:
            out.append(text)
    return out


def run_id_for(plan: Plan, content_hash: str, tag: str | None, semantics_source: str | None = None,
               protocol: dict[str, Any] | None = None) -> str:
    """Deterministic id: the same dataset content, codecs, rates, metrics (and senders'
    label-map source, when a segmenter gives it, and the named protocol preset, when one
    is used) → same run."""
    key: dict[str, Any] = {
        "dataset": plan.dataset.protocol(),
        "content": content_hash,
        "codecs": [c.describe() for c in plan.codecs],
        "rates": {c.name: [c.rate_label(r) for r in plan.rates[c.name]] for c in plan.codecs},
        "metrics": [m.describe() for m in plan.metrics],
        "tag": tag,
    }
    if semantics_source is not None:
        key["semantics"] = semantics_source
    if protocol is not None and protocol.get("name") != presets.CARD:
        key["protocol"] = protocol
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{plan.dataset.name}-{digest}"


def evaluate_one(codec: Codec, rate: Any, sample: Sample, dataset: Dataset, metrics: Sequence[Metric]) -> Row:
    """Encode, decode and measure one image (no cache, no batching); failures become error rows."""
    coded = code(codec, rate, sample, dataset.class_set.name if dataset.class_set else None)
    row = base_row(codec, rate, sample, coded)
    if coded.recon is not None:
        measure(metrics, sample, [row], [coded.recon])
    return row


def execute(config: RunConfig, store: Store, *, progress: bool = True,
            on_skip: Callable[[str, str], None] | None = None, executor: Executor | None = None) -> str:
    """Run (or resume) ``config`` into ``store``; returns the run id.

    ``executor``: an :class:`~bench.execution.executor.Executor` (default: a
    :class:`bench.execution.local.LocalExecutor` built from the config).
    """
    from bench.execution.guard import check_timeout

    check_timeout(config.timeout, "timeout")  # before anything is stored
    config, protocol = apply_protocol(config)
    plan = make_plan(config)
    for name, reason in plan.skipped:
        (on_skip or (lambda n, r: log.warning("skipping %s: %s", n, r)))(name, reason)
    for metric in plan.metrics:  # weights resolved now: describe() names them in the run id and cache keys
        metric.prepare()
    content_hash = plan.dataset.content_hash(plan.ids)
    needs_semantics = any(c.needs_semantics for c in plan.codecs)
    semantics = sender_semantics(config) if needs_semantics else None
    run_id = run_id_for(plan, content_hash, config.tag, semantics.identity if semantics is not None else None,
                        protocol)
    caveats = run_caveats(plan, semantics)  # e.g. an off-domain segmenter (bench.report.caveats)
    meta = {
        "git_sha": provenance.git_sha(),
        "packages": provenance.package_versions(),
        "machine": provenance.machine(),
        "dataset": {"name": plan.dataset.name, "content_hash": content_hash, "n_images": len(plan.ids),
                    "protocol": plan.dataset.protocol()},
        "codecs": {c.name: c.describe() for c in plan.codecs},
        "rates": {c.name: [c.rate_label(r) for r in plan.rates[c.name]] for c in plan.codecs},
        "metrics": {m.name: m.describe() for m in plan.metrics},
        "metric_options": {k: v for k, v in config.metric_options.items() if k != "device"},
        "metric_params": config.metric_params,
        "skipped": dict(plan.skipped),
        "semantics_source": (semantics.identity if semantics is not None else "ground-truth") if needs_semantics else None,
        "tag": config.tag,
        "protocol": protocol,
        "caveats": caveats,
    }
    for caveat in caveats:
        log.warning("caveat: %s", caveat)
    config_json = {"dataset": getattr(config.dataset, "name", config.dataset),
                   "codecs": [getattr(c, "name", c) for c in config.codecs], "metrics": config.metrics,
                   "rates": config.rates, "limit": config.limit, "dataset_params": config.dataset_params,
                   "protocol": protocol["name"]}
    store.begin_run(run_id, config_json, meta)
    done = store.done_keys(run_id, include_errors=not config.retry_failed)
    planned = [(ci, r) for ci, c in enumerate(plan.codecs) for r in plan.rates[c.name]]
    todo = []
    for image_id in plan.ids:
        pending = [(ci, r) for ci, r in planned
                   if (plan.codecs[ci].name, plan.codecs[ci].rate_label(r), image_id) not in done]
        if pending:
            todo.append((image_id, pending))
    remaining = sum(len(p) for _, p in todo)
    if executor is None:
        cache = ResultCache(store.db, keep_reconstructions=config.keep_reconstructions) if config.use_cache else None
        executor = LocalExecutor(workers=config.workers, batch_size=config.batch_size, cache=cache,
                                 timeout=config.timeout)
    if progress and remaining:
        tqdm.write(f"{run_id}: {remaining} codings to do ({plan.total - remaining} stored)", file=sys.stderr)
    bars = RunProgress(remaining, [m.name for m in plan.metrics if is_network(m)],
                       resumed=plan.total - remaining, disable=not progress or not remaining)
    progress_hook(executor, bars.tick)
    with bars:
        for row in executor.run(plan.dataset, plan.codecs, plan.metrics, todo, semantics):
            store.put(run_id, row)
            bars.row_done()
    # FID/KID at each rate point: computed now, stored with their states' hash (read by report & co.)
    compute_run(store, run_id, progress=progress)
    # networks learn whether they fell back to random weights only when first loaded
    meta["metrics"] = {m.name: m.describe() for m in plan.metrics}
    meta["threads"] = threads_meta(executor)  # processes × threads used, adapted main threads
    store.update_meta(run_id, meta)
    store.finish_run(run_id)
    return run_id


def require_some_ok(store: Store, run_id: str) -> None:
    """Raise :class:`AllRowsFailedError` (exit 8) when the run has rows and every one failed:
    such a run measured nothing and must not pass as a success (its rows stay stored)."""
    with store.db:  # one read transaction
        total, ok = store.db.execute("SELECT COUNT(*), SUM(status = 'ok') FROM rows WHERE run_id = ?",
                                     (run_id,)).fetchone()
        first = store.db.execute("SELECT codec, rate, image_id, error FROM rows WHERE run_id = ? AND status != 'ok' "
                                 "ORDER BY codec, rate, image_id LIMIT 1", (run_id,)).fetchone()
    if total and not ok:
        codec, rate, image, error = first
        reason = (str(error or "").strip().splitlines() or ["no error recorded"])[0]
        raise AllRowsFailedError(f"run {run_id}: every one of its {total} rows failed (first: {codec} at rate {rate} "
                                 f"on {image}: {reason})",
                                 f"see every error with `bench report {run_id}` (failures.csv); fix the cause, then "
                                 "re-run the command with --retry-failed")
