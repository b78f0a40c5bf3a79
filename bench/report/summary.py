"""Summaries of a stored run as pandas DataFrames.

* :func:`summarise` — one row per codec × rate point: counts, mean bpp (total and per
  byte part; the paper's formula rate ``bpp_paper`` beside it for codecs that declare one,
  see :mod:`.rates`), the metrics' dataset-level values (``compute(merge_all(states))`` over
  the ok rows where that metric succeeded; FID/KID read back from the store while their
  states are unchanged, see :mod:`bench.analysis.dataset_level`), ``n_<metric>`` (images each metric was computed
  on) and the mean of any per-image value that ``compute`` does not produce.
* :func:`per_image` — one tidy row per image × codec × rate (``error_<metric>`` for a
  metric that failed on that image).
* :func:`failures` — (image, codec, rate, metric, error): codec-level failures with an
  empty metric, then each metric's failure on an image.

A metric that failed on some images of a rate point leaves ``n_<metric>`` below ``n_ok``;
tables then mark its values (see :mod:`.tables`).

Every column that comes from a metric recorded with ``random_weights: True`` in the run
meta is renamed ``"<key> (random weights)"`` so the mark follows the value into every
table and figure. Column metadata (unit, direction, metric, random) is kept in
``df.attrs["columns"]`` and can be read back with :func:`column_info`.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.dataset_level import DatasetValues
from bench.registry import catalog
from bench.storage import summaries
from bench.storage.store import Row, Store

from ..codecs.base import bits_per_pixel
from ..errors import BenchError
from ..metrics.base import Metric
from .attrs import codec_labels, frame_attrs, run_context
from .caveats import run_caveats
from .floor import is_floor
from .order import sort_frame
from .rates import BASIS, PAPER, PAPER_PREFIX, REAL_COPY, is_paper_key, paper_values

log = logging.getLogger("bench")

RANDOM_MARK = " (random weights)"
KEY_COLUMNS = ("codec", "rate")
COUNT_COLUMNS = ("n_ok", "n_failed")
#: Counts about the data that metrics report (identical reconstructions), always printed.
DATA_COUNTS = ("n_identical",)

# Per-image keys that belong to no metric's compute() but whose meaning is known.
KNOWN_DIRECTIONS: dict[str, bool] = {"mse": False}
# Side values of a metric (sample counts, patch size, spread) and per-class breakdowns
# ("iou_gt/road"): kept in CSV, left out of the printed tables and default curves.
DETAIL_SUFFIXES = ("_n", "_images", "_patch", "_low_n", "_subset_size", "_subsets", "_std", "_lo", "_hi")
DETAIL_PREFIXES = ("classes_",)


@dataclass(frozen=True)
class ColumnInfo:
    """What a summary column holds.

    ``kind``: "key" (codec, rate), "count", "rate" (bpp columns, unit bpp),
    "dataset" (a metric's compute() value), "mean" (mean of per-image values).
    ``unit``: "bpp", "dB" or "" (unitless). ``higher_is_better``: None when unknown.
    ``detail``: a side value or per-class breakdown (CSV only; see :func:`is_detail`).
    """

    column: str
    key: str
    kind: str
    unit: str = ""
    metric: str | None = None
    higher_is_better: bool | None = None
    random_weights: bool = False
    detail: bool = False
    label: str = ""  # shown name when it is not derived from the key (e.g. "bpp (paper rate)")


def is_detail(key: str) -> bool:
    """True for side values (``fid_n``, ``kid_std``, ``classes_gt``) and per-class
    breakdowns (``iou_gt/road``), which stay out of printed tables and default curves."""
    return "/" in key or key.startswith(DETAIL_PREFIXES) or key.endswith(DETAIL_SUFFIXES)


# -- column metadata ---------------------------------------------------------------------
def _metric_class(name: str) -> type[Metric] | None:
    reg = catalog.registry("metric")
    if name not in reg:
        return None
    try:
        return reg.get(name).load()
    except (BenchError, ImportError) as err:
        log.warning("metric %s cannot be loaded for the report: %s", name, err)
        return None


def _owner(key: str, names: Iterable[str]) -> str | None:
    """The metric a per-image key belongs to: ``name`` or ``name_*`` (longest name wins)."""
    hits = [n for n in names if key == n or key.startswith(n + "_")]
    return max(hits, key=len) if hits else None


def _value_info(key: str, metric: str | None, kind: str, random: bool) -> ColumnInfo:
    cls = _metric_class(metric) if metric else None
    direction = cls.higher_is_better if cls is not None else KNOWN_DIRECTIONS.get(key)
    unit = "dB" if (key.endswith("_db") or "_db_" in key) else (cls.unit if cls is not None else "")
    detail = is_detail(key)
    if (detail and "/" not in key) or is_floor(key):  # counts, spreads, noise floors: no direction
        direction, unit = None, ""
    column = key + RANDOM_MARK if random else key
    if key.startswith("n_"):  # a count a metric reports (n_identical)
        return ColumnInfo(column, key, "count", "", metric, None, random, False)
    return ColumnInfo(column, key, kind, unit, metric, direction, random, detail)


def _fixed_info(column: str) -> ColumnInfo | None:
    if column in KEY_COLUMNS or column == "image_id":
        return ColumnInfo(column, column, "key")
    if column in COUNT_COLUMNS or column in DATA_COUNTS:
        return ColumnInfo(column, column, "count")
    if column.startswith("n_"):  # n_<metric>: images the metric was computed on
        return ColumnInfo(column, column, "count", metric=column[2:])
    if column == BASIS:
        return ColumnInfo(column, column, "key")
    if column == PAPER or column.startswith(PAPER_PREFIX):
        label = "bpp (paper formula)" if column == PAPER else f"bpp (paper: {column[len(PAPER_PREFIX):]})"
        return ColumnInfo(column, column, "rate", "bpp", None, False, detail=column != PAPER, label=label)
    if column == REAL_COPY:
        return ColumnInfo(column, column, "rate", "bpp", None, False, label="bpp (real)")
    if column == "bpp" or column.startswith("bpp_"):
        return ColumnInfo(column, column, "rate", "bpp", None, False)
    return None


def column_info(df: pd.DataFrame) -> dict[str, ColumnInfo]:
    """Metadata of every column: from ``df.attrs`` when the frame came from
    :func:`summarise`, else inferred from the column names (e.g. after a CSV round trip)."""
    stored = df.attrs.get("columns", {})
    names = catalog.registry("metric").names()
    out: dict[str, ColumnInfo] = {}
    for col in df.columns:
        if col in stored:
            out[col] = ColumnInfo(**stored[col])
            continue
        fixed = _fixed_info(col)
        if fixed is not None:
            out[col] = fixed
            continue
        random = col.endswith(RANDOM_MARK)
        key = col[: -len(RANDOM_MARK)] if random else col
        out[col] = _value_info(key, _owner(key, names), "mean", random)
    return out


# -- loading -----------------------------------------------------------------------------
Loaded = tuple[dict[str, Any], list[Row]]


class StoredRows(list[Row]):  # a subclass only to mark where the rows came from
    """All of a run's rows as :func:`load_run` read them (a filtered list is a plain list)."""

    states = True


def load_run(store: Store, run_id: str, states: bool | Collection[str] = True) -> Loaded:
    """A run's metadata and all its rows, read once; :func:`summarise`, :func:`per_image`
    and :func:`failures` take it as ``loaded`` instead of reading the store again.
    ``states=False``: rows without metric states (what tables need when the summary is
    stored); metric names: only theirs (such rows are summarised from the store's)."""
    run = store.run(run_id)
    rows = StoredRows(store.rows(run["run_id"], states=states))
    rows.states = states is True
    return run, rows


def _random_metrics(run: dict[str, Any]) -> set[str]:
    described = run["meta"].get("metrics") or {}
    return {n for n, d in described.items() if isinstance(d, dict) and d.get("random_weights")}


def _metric_names(run: dict[str, Any], rows: list[Row]) -> list[str]:
    """Metrics of the run: those in the run meta, then any other with stored states."""
    names = list(run["meta"].get("metrics") or {})
    extra = sorted({m for r in rows for m in r.states} - set(names))
    return names + extra


def _make_metric(name: str, warnings: list[str], params: dict[str, Any] | None = None) -> Metric | None:
    """The metric as the run built it (its recorded params), without loading any network."""
    try:
        return catalog.make_metric(name, **{**(params or {}), "allow_random_weights": True})
    except BenchError as err:
        warnings.append(f"{name}: dataset-level values skipped ({err.problem}); per-image means are reported")
        log.warning(warnings[-1])
        return None


def _part_bpp(row: Row, part: str) -> float:
    """bpp of one byte part; an absent part is 0 bytes (nothing was sent)."""
    n = row.bytes.get(part, 0)
    if row.height and row.width:
        return bits_per_pixel(n, row.height, row.width)
    return float(row.metrics.get(f"bpp_{part}", math.nan if part in row.bytes else 0.0))


def noted_rates(rows: Sequence[Row], parts: Sequence[str]) -> list[str]:
    """Rates a codec notes beside its real bpp that are neither a byte part's nor a paper
    formula's, e.g. CompressAI's strings-only ``bpp_compressai`` (in bpp)."""
    return sorted({k for r in rows if r.status == "ok" for k in r.metrics
                   if k.startswith("bpp_") and k[4:] not in parts and not is_paper_key(k)})


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _sort(df: pd.DataFrame) -> pd.DataFrame:
    """Codec by name, then rate points from lowest to highest bpp (no-bpp rows last; equal
    bpp in numeric rate order, :func:`bench.report.order.rate_key`)."""
    if df.empty:
        return df
    return sort_frame(df, ("codec", "bpp", "rate"))


# -- public API --------------------------------------------------------------------------
def summarise(store: Store, run_id: str, loaded: Loaded | None = None) -> pd.DataFrame:
    """One row per (codec, rate), sorted per codec from lowest to highest bpp.

    Columns: codec, rate, n_ok, n_failed, n_<metric> (ok images on which that metric
    succeeded), bpp (mean per-image bpp over ok images), bpp_paper (mean paper formula rate,
    when a codec declares one; NaN for the others) and its terms bpp_paper_<part>, bpp_<part>
    per byte part, each metric's dataset-level values (over the images in n_<metric>), then
    means of per-image values that no compute() produced. Failed rows are counted and
    otherwise ignored; a metric's failure on an image only lowers that metric's N.
    Read from the store while its rows are those it was computed from (and stored there
    otherwise, :mod:`bench.storage.summaries`); ``loaded`` may then be rows without states.
    """
    run, rows = loaded or load_run(store, run_id, states=False)
    if not isinstance(rows, StoredRows):  # some of the rows (e.g. the images two runs share)
        return _summarise(store, run, rows)
    key = summaries.summary_key(run, rows)
    df = summaries.read_summary(store, run["run_id"], key)
    if df is not None:
        df.attrs = frame_attrs(**df.attrs)
        return df
    if not rows.states:  # rows read without their states
        rows = list(store.rows(run["run_id"]))
    df = _summarise(store, run, rows)
    summaries.write_summary(store, run["run_id"], key, df)
    return df


def _summarise(store: Store, run: dict[str, Any], rows: list[Row]) -> pd.DataFrame:
    names = _metric_names(run, rows)
    warnings: list[str] = []
    metrics: dict[str, Metric | None] = {}  # built on first use (importing some is slow)
    random = _random_metrics(run)
    parts = sorted({p for r in rows if r.status == "ok" for p in r.bytes})
    paper_keys = sorted({k for r in rows if r.status == "ok" for k in paper_values(r.metrics)})
    noted = noted_rates(rows, parts)

    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        groups[(r.codec, r.rate)].append(r)

    dataset_keys: dict[str, str] = {}  # value key -> metric, in first-seen order
    records = []
    stored = DatasetValues(store, run["run_id"])  # FID/KID: read back unless their states changed
    params = run["meta"].get("metric_params") or {}
    for (codec, rate), group in groups.items():
        ok = [r for r in group if r.status == "ok"]
        rec: dict[str, Any] = {"codec": codec, "rate": rate, "n_ok": len(ok), "n_failed": len(group) - len(ok)}
        rec["bpp"] = _mean([float(r.bpp) for r in ok if r.bpp is not None])
        for p in parts:
            rec[f"bpp_{p}"] = _mean([_part_bpp(r, p) for r in ok])
        for key in paper_keys:
            rec[key] = _mean([v[key] for v in (paper_values(r.metrics) for r in ok) if key in v])
        for key in noted:
            rec[key] = _mean([float(r.metrics[key]) for r in ok if key in r.metrics])
        for name in names:
            states = [r.states[name] for r in ok if name in r.states]
            rec[f"n_{name}"] = len(states)
            if not states:
                continue
            if name not in metrics:
                metrics[name] = _make_metric(name, warnings, params.get(name))
            metric = metrics[name]
            if metric is None:
                continue
            failed = sum(1 for r in ok if name in r.metric_errors)
            if len(states) < len(ok) - failed:  # recorded failures are marked in tables and failures.csv
                warnings.append(f"{codec} @ {rate}: {name} from {len(states)} of {len(ok)} ok images "
                                f"({len(ok) - failed - len(states)} have no stored state and no recorded error)")
                log.warning(warnings[-1])
            try:
                values = stored.get(codec, rate, name, metric, params.get(name), states)
            except Exception as err:  # noqa: BLE001 - one metric must not sink the whole report
                warnings.append(f"{codec} @ {rate}: {name} compute failed ({type(err).__name__}: {err})")
                log.warning(warnings[-1])
                continue
            for key, value in values.items():
                dataset_keys.setdefault(key, name)
                rec[key] = float(value)
        records.append((rec, ok))
    stored.flush()

    # Means of per-image values that compute() did not produce (e.g. psnr's "mse").
    mean_keys = sorted({k for _rec, ok in records for r in ok for k in r.metrics
                        if k not in dataset_keys and not k.startswith("bpp_") and not is_paper_key(k)})
    for rec, ok in records:
        for key in mean_keys:
            rec[key] = _mean([float(r.metrics[key]) for r in ok if key in r.metrics])

    infos: list[ColumnInfo] = [_fixed_info(c) for c in (*KEY_COLUMNS, *COUNT_COLUMNS)]  # type: ignore[misc]  # _fixed_info is never None for these fixed columns
    n_names = [n for n in names if any(f"n_{n}" in rec for rec, _ok in records)]
    infos += [ColumnInfo(f"n_{n}", f"n_{n}", "count", metric=n) for n in n_names]
    infos += [_fixed_info(c) for c in ("bpp", *(k for k in paper_keys if k == PAPER))]  # type: ignore[misc]  # _fixed_info is never None for these fixed columns
    infos += [_fixed_info(f"bpp_{p}") for p in parts]  # type: ignore[misc]  # _fixed_info is never None for these fixed columns
    infos += [_fixed_info(k) for k in paper_keys if k != PAPER]  # type: ignore[misc]  # _fixed_info is never None for these fixed columns
    # in the CSV and bench.summary, not in the printed tables (which keep to 100 columns)
    infos += [replace(_fixed_info(k), detail=True) for k in noted]  # type: ignore[misc,type-var]  # never None here
    owners = {k: _owner(k, names) for k in mean_keys}
    for name in names:
        infos += [_value_info(k, name, "dataset", name in random) for k, m in dataset_keys.items() if m == name]
        infos += [_value_info(k, name, "mean", name in random) for k in mean_keys if owners[k] == name]
    infos += [_value_info(k, None, "mean", False) for k in mean_keys if owners[k] is None]

    df = pd.DataFrame([rec for rec, _ok in records], columns=[i.key for i in infos])
    df.columns = [i.column for i in infos]
    df = _sort(df)
    df.attrs = frame_attrs(run_id=run["run_id"], columns={i.column: asdict(i) for i in infos},
                           random_metrics=sorted(random), parts=parts, warnings=warnings,
                           codec_labels=codec_labels(run), caveats=run_caveats(run),
                           **run_context(run))
    return df


def per_image(store: Store, run_id: str, loaded: Loaded | None = None) -> pd.DataFrame:
    """One tidy row per image × codec × rate: status, error, size, bpp (total and per
    part), bpp_paper (a codec's paper formula rate, NaN for others) and its terms, per-image
    metric values (random-weights ones marked), error_<metric> (a metric's failure on the
    image; the row stays ok) and seconds_<stage>."""
    run, rows = loaded or load_run(store, run_id)
    names = _metric_names(run, rows)
    random = _random_metrics(run)
    parts = sorted({p for r in rows for p in r.bytes})
    noted = set(noted_rates(rows, parts))
    records = []
    for r in rows:
        rec: dict[str, Any] = {"codec": r.codec, "rate": r.rate, "image_id": r.image_id, "status": r.status,
                               "error": r.error, "height": r.height, "width": r.width,
                               "bpp": r.bpp if r.bpp is not None else math.nan}
        for p in parts:
            rec[f"bpp_{p}"] = _part_bpp(r, p) if r.status == "ok" or p in r.bytes else math.nan
        rec.update(paper_values(r.metrics))
        for key, value in r.metrics.items():
            if key in noted:
                rec[key] = value
            if key.startswith("bpp_") or is_paper_key(key):
                continue
            owner = _owner(key, names)
            rec[key + RANDOM_MARK if owner in random else key] = value
        rec.update({f"seconds_{k}": v for k, v in r.seconds.items()})
        rec.update({f"note_{k}": v for k, v in r.notes.items()})
        rec.update({f"error_{k}": v for k, v in r.metric_errors.items()})
        records.append(rec)
    df = pd.DataFrame(records)
    if df.empty:
        return pd.DataFrame(columns=["codec", "rate", "image_id", "status", "error", "height", "width", "bpp"])
    df[["height", "width"]] = df[["height", "width"]].astype("Int64")
    df.attrs = {"run_id": run["run_id"], "random_metrics": sorted(random)}
    attrs = df.attrs
    df = sort_frame(df, ("codec", "rate", "image_id"))  # rates in numeric order: 5, 10, 35, 100
    df.attrs = attrs
    return df


FAILURE_COLUMNS = ["image_id", "codec", "rate", "metric", "error"]


def failures(store: Store, run_id: str, loaded: Loaded | None = None) -> pd.DataFrame:
    """Every failure: (image_id, codec, rate, metric, error). A failed row (unreadable
    image, codec crash) has an empty metric; a metric that failed on an otherwise ok row
    has one line per metric."""
    run, rows = loaded or load_run(store, run_id)
    bad = [{"image_id": r.image_id, "codec": r.codec, "rate": r.rate, "metric": "", "error": r.error or ""}
           for r in rows if r.status != "ok"]
    bad += [{"image_id": r.image_id, "codec": r.codec, "rate": r.rate, "metric": m, "error": e}
            for r in rows for m, e in sorted(r.metric_errors.items())]
    df = pd.DataFrame(bad, columns=FAILURE_COLUMNS)
    df.attrs = {"run_id": run["run_id"]}
    return df
