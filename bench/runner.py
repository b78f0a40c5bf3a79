"""Plan and execute codec × rate × image, writing each row to the store as it finishes.

The same command run twice reuses the same run id: rows already stored are skipped,
so a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from . import catalog, provenance
from .codecs.base import Codec, Semantics, bits_per_pixel
from .datasets.base import Dataset, Sample
from .errors import BenchError, ConfigError, UnavailableError
from .metrics.base import Metric, Pair
from .store import Row, Store

log = logging.getLogger("bench")

DEFAULT_STORE = Path("results") / "bench.sqlite"


@dataclass
class RunConfig:
    """What ``bench run`` was asked to do.

    ``rates`` maps a codec name to rate values (text, parsed by the codec's knob); a
    codec not in it uses its card's or its default rate points.
    """

    dataset: str
    codecs: list[str]
    metrics: list[str] = field(default_factory=lambda: ["all"])
    rates: dict[str, list[str]] = field(default_factory=dict)
    limit: int | None = None
    dataset_params: dict[str, Any] = field(default_factory=dict)
    codec_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric_options: dict[str, Any] = field(default_factory=dict)  # weights_dir, allow_random_weights, device
    retry_failed: bool = False
    tag: str | None = None


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
    return "; ".join(f"{r.kind} {r.name} missing: {r.detail}" for r in reqs)


def resolve_codecs(names: Sequence[str], params: dict[str, dict[str, Any]]) -> tuple[list[Codec], list[tuple[str, str]]]:
    """Build the named codecs. ``all`` takes every registered codec and skips the
    unavailable ones with a reason; an explicitly named unavailable codec raises."""
    reg = catalog.registry("codec")
    explicit = [n for n in names if n != "all"]
    wanted = list(dict.fromkeys((reg.names() if "all" in names else []) + explicit))
    codecs, skipped = [], []
    for name in wanted:
        if (reg.get(name).card.get("skip_in_all") and name not in explicit):
            continue
        try:
            codec = catalog.make_codec(name, **params.get(name, {}))
        except UnavailableError as err:
            if name in explicit:
                raise
            skipped.append((name, err.problem))
            continue
        missing = codec.missing()
        if missing:
            if name in explicit:
                raise UnavailableError(f"codec {name!r} is not available: {_reason(missing)}",
                                       f"install what is missing, or see `bench list codecs`")
            skipped.append((name, _reason(missing)))
            continue
        codecs.append(codec)
    if not codecs:
        raise ConfigError("no codec to run", "name codecs with --codecs (see `bench list codecs`)")
    return codecs, skipped


def resolve_metrics(names: Sequence[str], options: dict[str, Any] | None = None) -> tuple[list[Metric], list[tuple[str, str]]]:
    """Build metrics; ``all`` takes every available one and reports the others."""
    reg = catalog.registry("metric")
    explicit = [n for n in names if n != "all"]
    wanted = list(dict.fromkeys((reg.names() if "all" in names else []) + explicit))
    metrics, skipped = [], []
    for name in wanted:
        try:
            metric = catalog.make_metric(name, **(options or {}))
            missing = [r for r in metric.requirements() if not r.found]
            if missing:
                raise UnavailableError(f"metric {name!r} is not available: {_reason(missing)}",
                                       "see `bench doctor`")
        except UnavailableError as err:
            if name in explicit:
                raise
            skipped.append((name, err.problem))
            continue
        metrics.append(metric)
    return metrics, skipped


def make_plan(config: RunConfig) -> Plan:
    dataset = catalog.make_dataset(config.dataset, **config.dataset_params)
    ids = dataset.ids()
    if config.limit is not None:
        ids = ids[: config.limit]
    if not ids:
        raise ConfigError(f"dataset {config.dataset!r} has no images", "check the dataset root and split")
    codecs, skipped = resolve_codecs(config.codecs, config.codec_params)
    metrics, skipped_m = resolve_metrics(config.metrics, config.metric_options)
    rates: dict[str, list[Any]] = {}
    for codec in codecs:
        asked = config.rates.get(codec.name) or config.rates.get("*")
        rates[codec.name] = [codec.rate_knob.parse(str(v)) for v in asked] if asked else catalog.codec_rates(codec)
    return Plan(dataset, codecs, rates, metrics, ids, skipped + skipped_m)


def run_id_for(plan: Plan, content_hash: str, tag: str | None) -> str:
    """Deterministic id: the same dataset content, codecs, rates and metrics → same run."""
    key = {
        "dataset": plan.dataset.protocol(),
        "content": content_hash,
        "codecs": [c.describe() for c in plan.codecs],
        "rates": {c.name: [c.rate_label(r) for r in plan.rates[c.name]] for c in plan.codecs},
        "metrics": [m.describe() for m in plan.metrics],
        "tag": tag,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{plan.dataset.name}-{digest}"


def semantics_for(codec: Codec, sample: Sample, dataset: Dataset) -> Semantics | None:
    """Ground-truth semantics for codecs that need a label map (else None)."""
    if not codec.needs_semantics:
        return None
    if sample.labels is None or dataset.class_set is None:
        raise ConfigError(
            f"codec {codec.name!r} needs a label map and dataset {dataset.name!r} has none for {sample.id}",
            "use a dataset with labels (cityscapes, coco) or give the codec a segmenter",
        )
    return Semantics(labels=sample.labels, class_set=dataset.class_set.name, source="ground-truth")


def evaluate_one(codec: Codec, rate: Any, sample: Sample, dataset: Dataset, metrics: Sequence[Metric]) -> Row:
    """Encode, decode and measure one image; every failure becomes an error row."""
    row = Row(codec=codec.name, rate=codec.rate_label(rate), image_id=sample.id,
              height=sample.height, width=sample.width)
    try:
        t0 = time.perf_counter()
        encoded = codec.encode(sample.image, rate, semantics=semantics_for(codec, sample, dataset))
        t1 = time.perf_counter()
        recon = codec.decode(dict(encoded.parts))
        t2 = time.perf_counter()
        row.seconds = {"encode": t1 - t0, "decode": t2 - t1}
        row.bytes = {name: len(data) for name, data in encoded.parts.items()}
        row.bpp = bits_per_pixel(encoded.total_bytes, sample.height, sample.width)
        row.metrics.update({f"bpp_{name}": bits_per_pixel(n, sample.height, sample.width)
                            for name, n in row.bytes.items()})
        row.metrics.update({k: v for k, v in encoded.notes.items() if isinstance(v, (int, float))})
        if recon.shape != sample.image.shape or recon.dtype != np.uint8:
            raise BenchError(f"codec {codec.name} decoded {recon.dtype}{recon.shape}, "
                             f"expected uint8{sample.image.shape}", "fix the adapter's decode")
        pair = Pair(sample, recon, encoded.total_bytes, codec.name, row.rate)
        errors = []
        for metric in metrics:
            tm = time.perf_counter()
            try:
                state = metric.init()
                values = metric.update(state, pair)
            except BenchError as err:
                errors.append(f"{metric.name}: {err.problem}")
                continue
            row.seconds[metric.name] = time.perf_counter() - tm
            row.states[metric.name] = state
            row.metrics.update(values)
            nans = [k for k, v in values.items() if isinstance(v, float) and math.isnan(v)]
            if nans:
                errors.append(f"{metric.name}: NaN in {', '.join(nans)}")
        if errors:
            row.status, row.error = "error", "; ".join(errors)
    except Exception as err:  # a failure on one image is recorded, the run goes on
        row.status = "error"
        row.error = f"{type(err).__name__}: {err}" if isinstance(err, BenchError) else (
            f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}")
    return row


def execute(config: RunConfig, store: Store, *, progress: bool = True,
            on_skip: Callable[[str, str], None] | None = None) -> str:
    """Run (or resume) ``config`` into ``store``; returns the run id."""
    plan = make_plan(config)
    for name, reason in plan.skipped:
        (on_skip or (lambda n, r: log.warning("skipping %s: %s", n, r)))(name, reason)
    content_hash = plan.dataset.content_hash(plan.ids)
    run_id = run_id_for(plan, content_hash, config.tag)
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
        "skipped": dict(plan.skipped),
        "tag": config.tag,
    }
    config_json = {"dataset": config.dataset, "codecs": config.codecs, "metrics": config.metrics,
                   "rates": config.rates, "limit": config.limit, "dataset_params": config.dataset_params}
    store.begin_run(run_id, config_json, meta)
    done = store.done_keys(run_id, include_errors=not config.retry_failed)
    todo = [(c, r) for c in plan.codecs for r in plan.rates[c.name]]
    bar = tqdm(total=plan.total, disable=not progress, desc=run_id, unit="img")
    bar.update(sum(1 for (c, r, _i) in done if any(c == cc.name and r == cc.rate_label(rr) for cc, rr in todo)))
    for image_id in plan.ids:
        pending = [(c, r) for c, r in todo if (c.name, c.rate_label(r), image_id) not in done]
        if not pending:
            continue
        try:
            sample = plan.dataset.load(image_id)
        except Exception as err:  # unreadable image: one error row per pending codec × rate
            message = f"cannot load image: {type(err).__name__}: {err}"
            for codec, rate in pending:
                store.put(run_id, Row(codec.name, codec.rate_label(rate), image_id, status="error", error=message))
                bar.update(1)
            continue
        for codec, rate in pending:
            store.put(run_id, evaluate_one(codec, rate, sample, plan.dataset, plan.metrics))
            bar.update(1)
    bar.close()
    # networks learn whether they fell back to random weights only when first loaded
    meta["metrics"] = {m.name: m.describe() for m in plan.metrics}
    store.update_meta(run_id, meta)
    store.finish_run(run_id)
    return run_id
