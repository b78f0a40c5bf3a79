"""Checkpoint sweeps: evaluate every checkpoint of a training run and gate the newest one.

    bench sweep --codec sqgan --checkpoints 'runs/exp1/*.ckpt' --dataset cityscapes --gate best

Each checkpoint is one run in the store, tagged ``<axis>=<n>`` (shown as ``sqgan@step=1200``),
with its codec built from the card plus ``checkpoint=<file>`` (for CompressAI models, one model
per λ, ``checkpoint={Q: <file>}`` for the quality label given by ``--rates CODEC=Q``). The training position comes
from the file name (Lightning's ``epoch=012.ckpt``, ``step=1200.ckpt``,
``epoch=3-step=1200.ckpt``, or ``--step-pattern REGEX`` with one group or a group named
``step``), else from the checkpoint's own ``global_step`` / ``epoch`` entries (read with
``torch.load(weights_only=True)``); the x axis is the step when every checkpoint has a distinct
one, else the epoch, else the order of the names. A pattern ending in "/" matches folders
(split checkpoints such as SQ-GAN's parts) instead of files. A checkpoint whose content (sha256) was
already evaluated with the same settings is skipped, so a second sweep computes nothing and an
interrupted one resumes.

Outputs (in ``<results>/sweep-<codec>/``): ``sweep.csv`` / ``sweep.md`` (one row per
checkpoint × rate point: bpp and metrics), ``sweep_bd.csv`` (BD-rate / BD-metric of every
checkpoint against ``--anchor RUN``), ``sweep_<codec>.png`` / ``.pdf`` (one panel per metric,
one line per rate point, metric against step; plus BD-rate against the anchor per step).

The gate compares the newest checkpoint with a reference — ``best`` (per metric, the earlier
checkpoint with the best mean over the rate points), ``first`` or a run id — with the
semantics of ``bench compare`` (BD-rate tolerance in %, per-metric delta tolerances), and
names every regressing metric and rate point.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.analysis.checkpoints import Checkpoint
from bench.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from bench.execution.runner import RunConfig
    from bench.storage.store import Store


def settings_key(config: RunConfig, codec: str, checkpoint_param: str) -> str:
    """Hash of everything but the checkpoint that decides a sweep run's numbers."""
    params = {k: v for k, v in config.codec_params.get(codec, {}).items() if k != checkpoint_param}
    key = {"dataset": getattr(config.dataset, "name", config.dataset), "dataset_params": config.dataset_params,
           "codec": codec, "params": params, "metrics": config.metrics, "rates": config.rates, "limit": config.limit,
           "metric_params": config.metric_params, "semantics": config.semantics_segmenter,
           "metric_options": {k: v for k, v in config.metric_options.items() if k != "device"}}
    from bench.datasets.presets import CARD

    if config.protocol not in (None, "", CARD):  # a named preset changes the numbers; keys without one unchanged
        key["protocol"] = config.protocol
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _evaluated(store: Store, key: str, sha: str, retry_failed: bool = False) -> str | None:
    """The run that evaluated this checkpoint with these settings; not one whose checkpoint could not
    be used (every row failed), nor, with ``retry_failed``, one with any failed row."""
    for run in store.runs():
        sweep = run["meta"].get("sweep") or {}
        if run["status"] == "finished" and sweep.get("key") == key and sweep.get("checkpoint_sha256") == sha:
            ok, failed = _row_counts(store, run["run_id"])
            if ok and not (retry_failed and failed):
                return run["run_id"]
    return None


def _row_counts(store: Store, run_id: str) -> tuple[int, int]:
    """(ok rows, failed rows) of a run."""
    ok, failed = store.db.execute("SELECT COALESCE(SUM(status = 'ok'), 0), COALESCE(SUM(status != 'ok'), 0) "
                                  "FROM rows WHERE run_id = ?", (run_id,)).fetchone()
    return int(ok), int(failed)


def _first_error(store: Store, run_id: str) -> str:
    row = store.db.execute("SELECT error FROM rows WHERE run_id = ? AND status != 'ok' LIMIT 1", (run_id,)).fetchone()
    return (str(row[0] or "").strip().splitlines() or ["no error recorded"])[0] if row else "no row stored"


def unusable_error(codec: str, failed: Sequence[Checkpoint], store: Store, checkpoint_param: str) -> Exception:
    """The :class:`~bench.errors.WeightsError` (exit 3) naming checkpoints none of whose images was coded."""
    from bench.errors import WeightsError

    listed = "; ".join(f"{c.path}: {_first_error(store, c.run_id)}" for c in failed if c.run_id)
    return WeightsError(
        f"{len(failed)} checkpoint(s) could not be used by {codec} (every image failed, so they are not counted "
        f"as evaluated): {listed}",
        f"check that each file is a checkpoint of {codec} for its --param {codec}.{checkpoint_param} (e.g. a "
        f"Lightning .ckpt whose state_dict keys carry a module prefix such as 'net.' must be exported to the "
        f"codec's layout first), then re-run the sweep with --retry-failed")


@dataclass
class SweepResult:
    """The evaluated checkpoints (in training order), the tables, figure paths and gate verdict."""

    codec: str
    axis: str
    checkpoints: list[Checkpoint]
    table: pd.DataFrame
    bd: pd.DataFrame
    paths: list[Path] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    gate_note: str = ""

    @property
    def computed(self) -> int:
        return sum(not c.skipped for c in self.checkpoints)


def checkpoint_rates(base: RunConfig, codec: str) -> list[str] | None:
    """The rates a snapshot's file is given to, for a codec with one model per rate point
    (``checkpoint_per_rate``: CompressAI, where each quality is its own λ; its checkpoint
    param is then ``{rate: path}``), which must be given (``--rates CODEC=Q``); None for a
    codec whose checkpoint param is the path itself."""
    from bench.registry import catalog

    if not getattr(catalog.codec_class(codec), "checkpoint_per_rate", False):
        return None
    rates = base.rates.get(codec) or base.rates.get("*")
    if not rates:
        raise ConfigError(f"{codec}: a training checkpoint is one model at one rate point (one λ), and no rate "
                          "was given to label it",
                          f"add --rates {codec}=Q (the quality whose λ it was trained with; it labels the curve)")
    return [str(r) for r in rates]


def run_sweep(base: RunConfig, codec: str, checkpoints: Sequence[Checkpoint], store: Store, *,
              axis: str = "step", checkpoint_param: str = "checkpoint", log: Any = None, progress: bool = False,
              on_skip: Callable[[str, str], None] | None = None) -> list[Checkpoint]:
    """Evaluate each checkpoint not yet evaluated with these settings (one tagged run each,
    logged to the trackers in ``log`` at its step); fills ``run_id`` / ``skipped``.

    A checkpoint none of whose images was coded (it does not load, or the codec fails on every
    image) is not counted as evaluated; after every checkpoint was tried, a
    :class:`~bench.errors.WeightsError` (exit 3) names each such file. ``base.retry_failed``
    recomputes failed rows, also those of checkpoints evaluated before."""
    from bench import api
    from bench.integrations.trackers import open_trackers

    key = settings_key(base, codec, checkpoint_param)
    per_rate = checkpoint_rates(base, codec)  # refuses missing --rates before any evaluation
    trackers, opened = open_trackers(log, Path(store.path).parent) if log else ([], [])
    unusable: list[Checkpoint] = []
    try:
        for ckpt in checkpoints:
            done = _evaluated(store, key, ckpt.sha256, base.retry_failed)
            if done is not None:
                ckpt.run_id, ckpt.skipped = done, True
                continue
            params = {**base.codec_params, codec: {**base.codec_params.get(codec, {}),
                                                   checkpoint_param: {r: str(ckpt.path) for r in per_rate}
                                                   if per_rate else str(ckpt.path)}}
            config = replace(base, codecs=[codec], codec_params=params, tag=f"{axis}={ckpt.x}")
            ckpt.run_id = api.run(config, store, log=trackers or None, step=ckpt.x, progress=progress, on_skip=on_skip)
            run = store.run(ckpt.run_id)
            meta = dict(run["meta"])
            meta["sweep"] = {"key": key, "checkpoint_sha256": ckpt.sha256, "checkpoint": str(ckpt.path),
                             "axis": axis, "x": ckpt.x, "step": ckpt.step, "epoch": ckpt.epoch, "source": ckpt.source}
            store.update_meta(ckpt.run_id, meta)
            if not _row_counts(store, ckpt.run_id)[0]:
                unusable.append(ckpt)
    finally:
        for t in opened:
            t.close()
    if unusable:
        raise unusable_error(codec, unusable, store, checkpoint_param)
    return list(checkpoints)


def _anchor_pair(store: Store, anchor_run: str, codec: str) -> tuple[str | None, str | None]:
    """(anchor codec, test codec) for compare(): None, None when the anchor run has ``codec`` itself."""
    codecs = list(store.run(anchor_run)["meta"].get("codecs") or {})
    if codec in codecs:
        return None, None
    if len(codecs) == 1:
        return codecs[0], codec
    raise ConfigError(f"anchor run {anchor_run} has no {codec!r} and several codecs ({', '.join(codecs)})",
                      "anchor on a run with one codec, or one that has this codec")


GATES = ("best", "first")


def check_references(store: Store, codec: str, *, gate: str | None = None, anchor: str | None = None) -> None:
    """Refuse a ``--gate`` / ``--anchor`` that names no stored run (or an anchor run that
    cannot pair with ``codec``) before any checkpoint is evaluated."""
    if gate and gate not in GATES:
        if gate in ("significant", "tolerance"):  # bench compare's --gate kinds, not a reference
            raise ConfigError(f"--gate {gate!r}: a sweep gates the newest checkpoint against a reference "
                              "(best, first or a run id) with BD-rate / delta tolerances",
                              "use --gate best|first|RUN; for intervals, `bench compare RUN_A RUN_B --gate "
                              "significant` on two of the sweep's runs")
        store.run(gate)  # StoreError naming the stored runs
    if anchor:
        _anchor_pair(store, store.run(anchor)["run_id"], codec)


def sweep_tables(store: Store, codec: str, checkpoints: Sequence[Checkpoint], *, axis: str = "step",
                 anchor: str | None = None, metrics: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per checkpoint × rate point: bpp and metric means/dataset values; per checkpoint ×
    metric: BD-rate % and BD-metric against the anchor run)."""
    import pandas as pd

    from bench.analysis.compare import compare
    from bench.report.curves import curve_columns
    from bench.report.summary import column_info, summarise

    rows, bd_rows = [], []
    for ckpt in checkpoints:
        df = summarise(store, ckpt.run)
        infos = column_info(df)
        cols = [c for c in curve_columns(df) if metrics is None or infos[c].key in metrics]
        for rec in df[df["codec"] == codec].to_dict(orient="records"):
            row = {axis: ckpt.x, "checkpoint": ckpt.path.name, "sha256": ckpt.sha256[:12], "run_id": ckpt.run_id,
                   "rate": rec["rate"], "n_ok": rec.get("n_ok"), "bpp": rec.get("bpp")}
            row.update({infos[c].key: rec.get(c) for c in cols})
            rows.append(row)
        if anchor:
            a_codec, t_codec = _anchor_pair(store, anchor, codec)
            result = compare(store, anchor, ckpt.run_id, metrics=metrics, anchor=a_codec or codec,
                             test=t_codec or codec)
            for r in result.metrics.to_dict(orient="records"):
                bd_rows.append({axis: ckpt.x, "checkpoint": ckpt.path.name, "run_id": ckpt.run_id,
                                "metric": r["metric"], "bd_rate_pct": r["bd_rate_pct"], "bd_metric": r["bd_metric"],
                                "verdict": r["verdict"], "notes": r["notes"]})
    bd = pd.DataFrame(bd_rows, columns=[axis, "checkpoint", "run_id", "metric", "bd_rate_pct", "bd_metric",
                                        "verdict", "notes"])
    return pd.DataFrame(rows), bd


def metric_columns(table: pd.DataFrame, axis: str) -> list[str]:
    """The metric columns of a sweep table (bpp first)."""
    fixed = {axis, "checkpoint", "sha256", "run_id", "rate", "n_ok"}
    return [c for c in table.columns if c not in fixed]


def sweep_figure(table: pd.DataFrame, bd: pd.DataFrame, axis: str, codec: str) -> Any:
    """One panel per metric (metric against the training axis, one line per rate point) and,
    when ``bd`` has rows, a panel of BD-rate against the anchor (one line per metric)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    cols = metric_columns(table, axis)
    panels = cols + (["BD-rate vs anchor"] if len(bd) else [])
    ncols = min(3, max(1, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    for i, name in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        if name == "BD-rate vs anchor":
            for metric, g in bd.groupby("metric", sort=True):
                g = g.sort_values(axis)
                ax.plot(g[axis], g["bd_rate_pct"].astype(float), marker="o", label=str(metric))
            ax.axhline(0.0, color="grey", linewidth=0.8)
            ax.set_ylabel("BD-rate [%] (lower is better)")
        else:
            for rate, g in table.groupby("rate", sort=True):
                g = g.sort_values(axis)
                ax.plot(g[axis], g[name].astype(float), marker="o", label=f"rate {rate}")
            ax.set_ylabel(name + (" [bpp]" if name == "bpp" else ""))
        ax.set_xlabel(axis)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{codec}: {name}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    return fig


def write_outputs(result: SweepResult, out_dir: Path | str) -> list[Path]:
    """sweep.csv, sweep.md, sweep_bd.csv (when anchored) and sweep_<codec>.png/.pdf, each
    written atomically (:mod:`bench.storage.atomic`)."""
    from tabulate import tabulate

    from bench.storage.atomic import output_dir, write_text, write_with

    out = output_dir(out_dir, "sweep folder (--dest)")
    paths = [write_with(out / "sweep.csv", lambda tmp: result.table.to_csv(tmp, index=False, float_format="%.17g")),
             write_text(out / "sweep.md", tabulate(result.table.drop(columns=["run_id"]), headers="keys",
                                                   tablefmt="github", showindex=False, floatfmt=".4f") + "\n")]
    if len(result.bd):
        paths.append(write_with(out / "sweep_bd.csv",
                                lambda tmp: result.bd.to_csv(tmp, index=False, float_format="%.17g")))
    fig = sweep_figure(result.table, result.bd, result.axis, result.codec)
    for suffix in ("png", "pdf"):
        paths.append(write_with(out / f"sweep_{result.codec}.{suffix}", lambda tmp: fig.savefig(tmp, dpi=120)))
    result.paths = paths
    return paths


def _best_reference(store: Store, codec: str, earlier: Sequence[Checkpoint], newest: Checkpoint,
                    key: str) -> Checkpoint | None:
    """The earlier checkpoint with the best mean of ``key`` over the rate points it shares with the newest."""
    from bench.analysis.compare import _direction, _key_columns
    from bench.report.summary import summarise

    df_new = summarise(store, newest.run)
    rates = set(df_new[df_new["codec"] == codec]["rate"])
    best, best_value = None, math.nan
    for ckpt in earlier:
        df = summarise(store, ckpt.run)
        col = _key_columns(df).get(key)
        if col is None:
            continue
        sel = df[(df["codec"] == codec) & df["rate"].isin(rates)][col].astype(float)
        value = float(sel.mean()) if len(sel) else math.nan
        if not math.isfinite(value):
            continue
        hib = _direction(df, key)
        if best is None or (value > best_value if hib else value < best_value):
            best, best_value = ckpt, value
    return best


def gate(store: Store, codec: str, checkpoints: Sequence[Checkpoint], reference: str, *,
         metrics: Sequence[str] | None = None, tolerance: float = 1.0,
         delta_tolerance: Mapping[str, float] | None = None) -> tuple[list[str], str]:
    """Regressions of the newest checkpoint against ``reference`` ("best", "first" or a run
    id), as ``bench compare`` judges them, each naming metric and rate point(s); and a note."""
    from bench.analysis.compare import compare, resolve_metrics
    from bench.report.summary import summarise

    if not checkpoints:
        return [], "no checkpoint to gate"
    newest = checkpoints[-1]
    earlier = list(checkpoints[:-1])
    if reference in GATES and not earlier:
        return [], f"only one checkpoint ({newest.path.name}): nothing to gate against"
    df_new = summarise(store, newest.run)
    mine = df_new[df_new["codec"] == codec]
    if not len(mine) or not (mine["n_ok"].fillna(0) > 0).any():  # a broken checkpoint must not pass the gate
        return ([f"{newest.path.name}: no image was coded and measured (every row failed; see `bench report "
                 f"{newest.run_id}`)"], f"newest {newest.path.name} has no result to gate")
    out: list[str] = []
    if reference in GATES:
        pairs = []
        df_ref = summarise(store, earlier[0].run)
        keys = resolve_metrics(metrics, df_ref, df_new)
        for key in keys:
            ref = earlier[0] if reference == "first" else _best_reference(store, codec, earlier, newest, key)
            if ref is not None:
                pairs.append((key, ref.run, f"{reference} checkpoint {ref.path.name}"))
    else:
        ref_run = store.run(reference)["run_id"]
        keys = resolve_metrics(metrics, summarise(store, ref_run), df_new)
        pairs = [(key, ref_run, f"run {ref_run}") for key in keys]
    a_codec = t_codec = None
    for key, ref_run, what in pairs:
        if reference not in GATES:
            a_codec, t_codec = _anchor_pair(store, ref_run, codec)
        result = compare(store, ref_run, newest.run, metrics=[key], anchor=a_codec or codec, test=t_codec or codec,
                         tolerance=tolerance, delta_tolerance=delta_tolerance)
        for line in result.regressions:
            worse = result.points[(result.points["metric"] == key) & result.points["verdict"].isin(["worse", "mixed"])]
            at = "; ".join(f"rate {p.rate}: {p.value_a:.4g} → {p.value_b:.4g} (Δ{key} {p.delta:+.4g}, "
                           f"Δbpp {p.delta_bpp_pct:+.2f}%)" for p in worse.itertuples())
            out.append(f"{newest.path.name} vs {what}: {line}" + (f" [worse at {at}]" if at else ""))
    return out, f"newest {newest.path.name} gated against {reference} on {', '.join(keys) or 'no metric'}"
