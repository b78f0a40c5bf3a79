"""Compare two runs, or two codecs of one run: Bjøntegaard deltas and per-rate-point deltas.

For every codec present in both runs (or an explicit anchor/test codec pair) and every
compared metric:

* **BD-rate** (%): the average bpp difference of the test curve against the anchor at equal
  quality, over the overlapping metric range — negative means the test needs fewer bits.
  Interpolation is PCHIP on (metric, log10 bpp) as in the ``bjontegaard`` package
  (``bjontegaard.bd_rate(..., method="pchip")``; VCEG-M33 used a cubic polynomial fit).
* **BD-metric** (metric units): the average metric difference (test − anchor) at equal
  bpp, over the overlapping log-bpp range (``bjontegaard.bd_psnr``, valid for any metric).
  For PSNR and MS-SSIM in dB this is BD-PSNR / BD-MS-SSIM in dB.
* **per-rate-point** deltas where both sides have the same rate label.

The direction of each metric (``higher_is_better`` of its class: LPIPS, FID, KID lower is
better) decides whether a delta is a gain. A codec × metric is a **regression** when the
BD-rate exceeds ``tolerance`` percent; when the BD-rate is undefined (metric not
monotonic in bpp, no overlapping quality range, fewer than 2 points), the BD-metric is
checked against the metric's delta tolerance, and failing that the shared rate points.

With ``ci`` (``bench compare --ci`` / ``--gate significant``) the comparison also carries
paired differences B − A per matched rate point over the same images and BD-rate /
BD-metric intervals from resampling images (:mod:`bench.analysis.paired`); ``--gate significant``
fails only when a regression's 95 % interval excludes zero.

Runs made under different protocols (the named protocol preset of ``bench run --protocol``,
dataset content, resolution, class set, metric settings such as the segmenter or the mIoU
reference) are refused with
:class:`~bench.errors.ProtocolMismatchError` instead of being compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

# Bjøntegaard math, protocol checks and labels live in leaf modules (re-exported here)
from bench.analysis.bd import BD_METHOD, BDResult, Curve, bd_metric, bd_rate, bjontegaard_delta  # noqa: F401
from bench.analysis.labels import checkpoint_of, codec_label, run_codec_labels  # noqa: F401
from bench.analysis.protocol import _flat_diff, check_same_protocol, protocol_differences  # noqa: F401
from bench.analysis.tolerance import DEFAULT_TOLERANCE, check_tolerances  # noqa: F401 (re-exported)
from bench.errors import REGRESSION_EXIT as _REGRESSION_EXIT
from bench.errors import ConfigError, TooFewImagesError
from bench.modes import GateKind, RateBasis
from bench.registry.catalog import card_maps
from bench.report.rates import BASIS, BASIS_PAPER, BASIS_REAL, rate_note, rate_view
from bench.report.summary import column_info, summarise
from bench.storage.store import Store

#: Metrics compared (and gated) by default, when both sides have them.
DEFAULT_METRICS: tuple[str, ...] = ("psnr", "msssim_db", "lpips", "fid", "miou_gt", "miou_orig")
#: Short names that stand for several summary keys.
ALIASES: dict[str, tuple[str, ...]] = {"miou": ("miou_gt", "miou_orig"), "ms-ssim": ("msssim_db",)}
#: Largest BD-metric / per-point change (metric units) still counted as "no change", for keys no
#: metric card declares (a card's ``delta_tolerance`` names its own keys' tolerances).
DEFAULT_DELTA_TOLERANCE: dict[str, float] = {"dists": 0.002}
FALLBACK_DELTA_TOLERANCE = 1e-3
#: Exit status of ``bench compare`` when the test side regresses.
REGRESSION_EXIT = _REGRESSION_EXIT



# -- comparing runs ----------------------------------------------------------------------
@dataclass
class Comparison:
    """Result of :func:`compare`.

    ``metrics``: one row per codec pair × metric (BD-rate %, BD-metric, verdict, …).
    ``points``: one row per codec pair × metric × shared rate label.
    ``regressions``: human-readable lines, one per regressing codec × metric.
    """

    run_a: str
    run_b: str
    metrics: pd.DataFrame
    points: pd.DataFrame
    regressions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE
    rate: RateBasis = "real"  # the bpp compared: "real" (transmitted bytes) or "paper" (formula rates)
    #: with ``ci`` (bench.analysis.paired.paired_intervals): paired B − A per matched rate point with intervals,
    #: significant regressions (interval excludes 0 on the worse side) and the bootstrap settings
    paired: pd.DataFrame | None = None
    significant_regressions: list[str] = field(default_factory=list)
    bootstrap: dict[str, Any] | None = None
    #: images compared (those both runs finished) and whether that is every image of both runs
    images: int | None = None
    complete: bool = True
    #: codec × metric intervals from fewer images than ``min_images`` (no significance verdict)
    too_few_images: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def gate(self, kind: GateKind = "tolerance") -> bool:
        """True when the comparison fails the gate: ``"tolerance"`` (default: beyond the
        tolerances) or ``"significant"`` (an interval excludes 0 on the worse side).
        ``"significant"`` raises :class:`~bench.errors.TooFewImagesError` when an interval
        it would judge comes from fewer images than the minimum."""
        if kind == "significant":
            if self.paired is None:
                raise ConfigError("the significant gate needs paired intervals", "compare with ci=Bootstrap()")
            if self.too_few_images:
                raise TooFewImagesError(
                    "too few images to judge significance: " + "; ".join(self.too_few_images),
                    "evaluate more images (a larger --limit), or lower --min-images knowingly "
                    "(an interval from a handful of images is not evidence)")
            return bool(self.significant_regressions)
        return bool(self.regressions)




def _key_columns(df: pd.DataFrame) -> dict[str, str]:
    """summary key (without the random-weights mark) → column name."""
    return {info.key: col for col, info in column_info(df).items() if info.kind in ("dataset", "mean")}


def resolve_metrics(requested: Sequence[str] | None, df_a: pd.DataFrame, df_b: pd.DataFrame) -> list[str]:
    """Summary keys to compare: the requested ones (aliases expanded) or the defaults
    present on both sides."""
    keys_a, keys_b = _key_columns(df_a), _key_columns(df_b)
    both = [k for k in keys_a if k in keys_b]
    if not requested:
        return [k for k in DEFAULT_METRICS if k in both]
    out: list[str] = []
    for name in requested:
        expanded = [k for k in ALIASES[name] if k in both] if name in ALIASES else [name]
        if not expanded:
            raise ConfigError(f"metric {name!r} ({', '.join(ALIASES[name])}) is not in both runs",
                              f"pick from: {', '.join(both) or '(none in common)'}")
        for key in expanded:
            if key not in both:
                raise ConfigError(f"metric {key!r} is not in both runs",
                                  f"pick from: {', '.join(both) or '(none in common)'}")
            out.append(key)
    return list(dict.fromkeys(out))


def _direction(df: pd.DataFrame, key: str) -> bool:
    col = _key_columns(df)[key]
    hib = column_info(df)[col].higher_is_better
    if hib is None:
        raise ConfigError(f"the direction of {key!r} (higher or lower is better) is unknown",
                          "compare metrics of registered metric classes, e.g. psnr, lpips, fid")
    return hib


def _metric_owner(df: pd.DataFrame, key: str) -> str | None:
    return column_info(df)[_key_columns(df)[key]].metric


def _classify(more_bits: bool, fewer_bits: bool, gain: float, dtol: float) -> str:
    """Verdict of one rate point from its bpp change (beyond the BD-rate tolerance) and its
    quality gain (metric change oriented so that > 0 is better, beyond ``dtol``)."""
    lower_q, higher_q = gain < -dtol, gain > dtol
    if (lower_q and not fewer_bits) or (more_bits and not higher_q):
        return "worse"
    if (higher_q and not more_bits) or (fewer_bits and not lower_q):
        return "better"
    return "mixed" if (lower_q or higher_q) else "same"  # a trade: fewer bits and lower quality, or vice versa


def _codec_rows(df: pd.DataFrame, codec: str) -> pd.DataFrame:
    return df[df["codec"] == codec]


def compare_frames(df_a: pd.DataFrame, df_b: pd.DataFrame, pairs: Sequence[tuple[str, str]],
                   metrics: Sequence[str], *, tolerance: float = DEFAULT_TOLERANCE,
                   delta_tolerance: Mapping[str, float] | None = None, method: str = BD_METHOD,
                   run_a: str = "A", run_b: str = "B") -> Comparison:
    """Compare summary frames (from :func:`bench.report.summarise`) for (anchor codec,
    test codec) pairs. ``tolerance``: BD-rate percent; ``delta_tolerance``: metric units."""
    check_tolerances(tolerance, delta_tolerance)
    dtols = {**DEFAULT_DELTA_TOLERANCE, **card_maps("metric", "delta_tolerance"), **(delta_tolerance or {})}
    cols_a, cols_b = _key_columns(df_a), _key_columns(df_b)
    rows, points, regressions, notes = [], [], [], []
    for anchor_codec, test_codec in pairs:
        ga, gb = _codec_rows(df_a, anchor_codec), _codec_rows(df_b, test_codec)
        label = anchor_codec if anchor_codec == test_codec else f"{anchor_codec} → {test_codec}"
        counts = ga[["rate", "n_ok"]].merge(gb[["rate", "n_ok"]], on="rate")
        if (counts["n_ok_x"] != counts["n_ok_y"]).any() or set(ga["n_ok"]) != set(gb["n_ok"]):
            notes.append(f"{label}: the number of successful images differs between the sides at some rate "
                         "points (failed rows are left out of the means)")
        for key in metrics:
            hib = _direction(df_a, key)
            dtol = dtols.get(key, FALLBACK_DELTA_TOLERANCE)
            ca = Curve.from_points(ga["bpp"], ga[cols_a[key]])
            cb = Curve.from_points(gb["bpp"], gb[cols_b[key]])
            bd = bjontegaard_delta(ca, cb, higher_is_better=hib, method=method)
            # per-rate-point deltas at shared rate labels
            merged = ga[["rate", "bpp", cols_a[key]]].merge(gb[["rate", "bpp", cols_b[key]]], on="rate",
                                                            suffixes=("_a", "_b"))
            a_col = cols_a[key] + ("_a" if cols_a[key] == cols_b[key] else "")
            b_col = cols_b[key] + ("_b" if cols_a[key] == cols_b[key] else "")
            point_verdicts = []
            for _, p in merged.iterrows():
                va, vb = float(p[a_col]), float(p[b_col])
                rel = (p["bpp_b"] - p["bpp_a"]) / p["bpp_a"] * 100 if p["bpp_a"] > 0 else math.nan
                delta = vb - va
                if math.isfinite(rel) and math.isfinite(delta):
                    verdict = _classify(rel > tolerance, rel < -tolerance, delta if hib else -delta, dtol)
                else:
                    verdict = "n/a"
                point_verdicts.append(verdict)
                points.append({"codec": label, "metric": key, "rate": p["rate"], "bpp_a": p["bpp_a"],
                               "bpp_b": p["bpp_b"], "delta_bpp_pct": rel, "value_a": va, "value_b": vb,
                               "delta": delta, "verdict": verdict})
            # verdict for the codec × metric
            if math.isfinite(bd.bd_rate):
                basis = "bd_rate"
                verdict = ("worse" if bd.bd_rate > tolerance else "better" if bd.bd_rate < -tolerance else "same")
            elif math.isfinite(bd.bd_metric):
                basis = "bd_metric"
                gain = bd.bd_metric if hib else -bd.bd_metric
                verdict = "worse" if gain < -dtol else "better" if gain > dtol else "same"
            elif [v for v in point_verdicts if v != "n/a"]:
                basis = "points"
                known = [v for v in point_verdicts if v != "n/a"]
                verdict = ("worse" if "worse" in known else "better" if all(v == "better" for v in known)
                           else "mixed" if "mixed" in known else "same")
            else:
                basis, verdict = "none", "n/a"
            rows.append({"codec": label, "metric": key, "higher_is_better": hib, "n_a": len(ca), "n_b": len(cb),
                         "bd_rate_pct": bd.bd_rate, "bd_metric": bd.bd_metric,
                         "quality_overlap": bd.quality_overlap, "rate_overlap": bd.rate_overlap,
                         "verdict": verdict, "basis": basis, "notes": "; ".join(bd.notes)})
            if verdict == "worse":
                if basis == "bd_rate":
                    why = f"BD-rate {bd.bd_rate:+.2f}% > tolerance {tolerance:g}%"
                elif basis == "bd_metric":
                    why = f"BD-{key} {bd.bd_metric:+.4g} ({'higher' if hib else 'lower'} is better; tolerance {dtol:g})"
                else:
                    bad = [p for p in points if p["codec"] == label and p["metric"] == key and p["verdict"] == "worse"]
                    why = "worse at rate point(s) " + ", ".join(
                        f"{p['rate']} (Δbpp {p['delta_bpp_pct']:+.2f}%, Δ{key} {p['delta']:+.4g})" for p in bad)
                regressions.append(f"{label}: {key} regressed — {why}")
    metric_df = pd.DataFrame(rows, columns=["codec", "metric", "higher_is_better", "n_a", "n_b", "bd_rate_pct",
                                            "bd_metric", "quality_overlap", "rate_overlap", "verdict", "basis",
                                            "notes"])
    point_df = pd.DataFrame(points, columns=["codec", "metric", "rate", "bpp_a", "bpp_b", "delta_bpp_pct",
                                             "value_a", "value_b", "delta", "verdict"])
    return Comparison(run_a, run_b, metric_df, point_df, regressions, notes, tolerance)


def compare(store: Store, run_a: str, run_b: str | None = None, *, metrics: Sequence[str] | None = None,
            codecs: Sequence[str] | None = None, anchor: str | None = None, test: str | None = None,
            tolerance: float = DEFAULT_TOLERANCE, delta_tolerance: Mapping[str, float] | None = None,
            method: str = BD_METHOD, ci: Any = None, rate_map: Mapping[str, str] | None = None,
            rate: RateBasis = "real", allow_partial: bool = False, min_images: int | None = None) -> Comparison:
    """Compare run ``run_b`` (test) against ``run_a`` (anchor).

    ``rate``: "real" compares at the bpp of the transmitted bytes; "paper" at each codec's
    paper formula rate (real bpp for codecs without one; ``rate_basis`` in the tables says
    which), see :func:`bench.report.rates.rate_view`. Paired intervals (``ci``) resample the
    same rate (:func:`bench.report.rates.paper_rate_rows`).

    Without ``anchor``/``test``: every codec present in both runs (or those in ``codecs``).
    With them: codec ``anchor`` of run A against codec ``test`` of run B (run B defaults to
    run A, i.e. two codecs of one run). Raises :class:`ProtocolMismatchError` when the two
    runs differ in protocol.

    ``ci`` (a :class:`bench.analysis.stats.Bootstrap`): also paired differences per matched rate point
    (same label, or ``rate_map`` {rate of A: rate of B}) and BD intervals from resampling
    images (:mod:`bench.analysis.paired`); needed by ``gate("significant")``, which refuses
    (:class:`~bench.errors.TooFewImagesError`) an interval from fewer than ``min_images``
    images (default :data:`bench.analysis.paired.MIN_IMAGES`).

    Only the images both runs finished are compared (:mod:`bench.analysis.coverage`); when that
    is not every image of both runs, :class:`~bench.errors.IncompleteRunError` unless
    ``allow_partial``. ``tolerance`` and ``delta_tolerance`` must be finite.
    """
    from bench.analysis.coverage import check_complete, coverage, restrict
    from bench.report.summary import load_run

    check_tolerances(tolerance, delta_tolerance)
    ra = store.run(run_a)
    rb = store.run(run_b) if run_b else ra
    same_run = ra["run_id"] == rb["run_id"]
    if same_run and not (anchor and test):
        raise ConfigError("comparing a run with itself needs two codecs",
                          "give a second run, or --anchor CODEC --test CODEC to compare two codecs of one run")
    # the stored summaries serve whole runs: rows' metric states are read only for intervals or a subset
    states = ci is not None
    loaded_a = load_run(store, ra["run_id"], states=states)
    loaded_b = loaded_a if same_run else load_run(store, rb["run_id"], states=states)
    codecs_a = list(dict.fromkeys(r.codec for r in loaded_a[1]))
    codecs_b = codecs_a if same_run else list(dict.fromkeys(r.codec for r in loaded_b[1]))
    if anchor or test:
        if not (anchor and test):
            raise ConfigError("--anchor and --test go together", "give both codec names")
        pairs = [(anchor, test)]
    else:
        common = [c for c in codecs_a if c in set(codecs_b)]
        pairs = [(c, c) for c in (codecs or common)]
        if not common:
            raise ConfigError(f"runs {ra['run_id']} and {rb['run_id']} have no codec in common",
                              "use --anchor CODEC --test CODEC to compare two different codecs")
    for a, b in pairs:
        for codec, names, rid in ((a, codecs_a, ra["run_id"]), (b, codecs_b, rb["run_id"])):
            if codec not in names:
                raise ConfigError(f"codec {codec!r} is not in run {rid}", f"codecs there: {', '.join(names)}")
    if not same_run:  # a different dataset is named as such, not as images "not finished"
        check_same_protocol(ra, rb)
    cov = coverage(loaded_a, loaded_b, pairs)
    check_complete(cov, ra["run_id"], rb["run_id"], allow_partial)
    if not cov.complete:  # only the images both runs finished, summarised from their states
        if not states:
            loaded_a = load_run(store, ra["run_id"])
            loaded_b = loaded_a if same_run else load_run(store, rb["run_id"])
        loaded_a = restrict(loaded_a, cov.common)
        loaded_b = loaded_a if same_run else restrict(loaded_b, cov.common)
    df_a = rate_view(summarise(store, ra["run_id"], loaded_a), rate)
    df_b = df_a if same_run else rate_view(summarise(store, rb["run_id"], loaded_b), rate)
    keys = resolve_metrics(metrics, df_a, df_b)
    if not keys:
        raise ConfigError("no metric to compare", "name one with --metric (e.g. --metric psnr)")
    if not same_run:
        owners = [m for m in dict.fromkeys(_metric_owner(df_a, k) for k in keys) if m]
        check_same_protocol(ra, rb, owners)
    result = compare_frames(df_a, df_b, pairs, keys, tolerance=tolerance, delta_tolerance=delta_tolerance,
                            method=method, run_a=ra["run_id"], run_b=rb["run_id"])
    _record_rate(result, rate, df_a, df_b, pairs)
    result.images, result.complete = len(cov.common), cov.complete
    result.notes.insert(0, cov.note())
    if ci is not None:
        from bench.analysis.paired import MIN_IMAGES, paired_intervals
        from bench.report.rates import paper_rate_rows

        rows_a = loaded_a[1]
        rows_b = rows_a if same_run else loaded_b[1]
        if rate == "paper":  # the intervals resample the rate the point values use
            rows_a = paper_rate_rows(rows_a)
            rows_b = rows_a if same_run else paper_rate_rows(rows_b)
        extra = paired_intervals(result.metrics, ra, rows_a, rb, rows_b, pairs, ci, rate_map=rate_map, method=method,
                                 min_images=MIN_IMAGES if min_images is None else min_images)
        result.metrics, result.paired = extra.metrics, extra.paired
        result.significant_regressions, result.bootstrap = extra.significant_regressions, extra.bootstrap
        result.too_few_images = extra.too_few_images
    if not same_run:
        for a, b in pairs:
            da = (ra["meta"].get("codecs") or {}).get(a)
            db = (rb["meta"].get("codecs") or {}).get(b)
            if da is not None and db is not None:
                result.notes += [f"{a}: settings differ — {d}" for d in _flat_diff(da, db, "codec")]
    return result


def _basis(df: pd.DataFrame, codec: str) -> str:
    if BASIS not in df.columns:
        return BASIS_REAL
    return BASIS_PAPER if (df.loc[df["codec"] == codec, BASIS] == BASIS_PAPER).any() else BASIS_REAL


def _record_rate(result: Comparison, rate: RateBasis, df_a: pd.DataFrame, df_b: pd.DataFrame,
                 pairs: Sequence[tuple[str, str]]) -> None:
    """Say which bpp was compared: ``rate`` on the result, a ``rate_basis`` column per codec
    pair in both tables ("paper formula" / "real bytes", A/B when the sides differ), a note."""
    result.rate = rate
    labels = {(a if a == b else f"{a} → {b}"): (_basis(df_a, a), _basis(df_b, b)) for a, b in pairs}
    text = {k: (ba if ba == bb else f"{ba} / {bb}") for k, (ba, bb) in labels.items()}
    for frame in (result.metrics, result.points):
        frame.insert(1, BASIS, [text.get(c, BASIS_REAL) for c in frame["codec"]])
    note = rate_note(df_a) if rate == "paper" else None
    if note:
        result.notes.insert(0, f"rate: {note}")
    if any(ba != bb for ba, bb in labels.values()):
        result.notes.append("some codec pairs compare a paper formula rate with a real bpp (rate_basis)")
