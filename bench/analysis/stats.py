"""Bootstrap over images: how sure is a dataset-level value?

A value of a codec at a rate point (mean bpp, PSNR, LPIPS, FID, mIoU …) is recomputed on
``resamples`` resamples of its images drawn with replacement (seeded), and its 95 %
percentile interval is reported. Nothing is recomputed by a network: every replicate
comes from what the store already holds —

* per-image values (bpp, ``mse``, ``miou_gt_img`` …): weighted means of the rows' values;
* a metric whose ``merge`` is the element-wise sum (PSNR, MS-SSIM, LPIPS sums; mIoU's
  per-class intersections and unions): the states of the drawn images are summed as one
  matrix product (multiplicity × state) and the metric's own ``compute`` runs on each sum;
* FID / KID (states that concatenate cached Inception features, ``merge_kind = "concat"``):
  the drawn images' feature rows are repeated by multiplicity. FID replicates use the exact
  low-rank form of torch-fidelity's formula (:func:`fid_from_features`: the trace of
  sqrtm(Σ₁Σ₂) is the nuclear norm of X̃₁X̃₂ᵀ/(N−1) for centred features), 100× faster
  than a 2048×2048 ``sqrtm``; KID replicates (N ≤ 1000, where torch-fidelity's every
  subset is the whole set) are its unbiased MMD² from the kernel matrices computed once by
  torch-fidelity's ``kernel_poly`` (:func:`kid_whole_set`), else the metric's own ``compute``;
* any other metric: ``compute(merge_all(drawn states))``.

FID/KID and other non-sum metrics use the first ``heavy_resamples`` of the same seeded
draws (default 100). Paired intervals (B − A over the same images) use one set of
draws for both sides, so a run against itself gives a difference of exactly 0.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bench.metrics.base import Metric, State
from bench.storage.store import Row

log = logging.getLogger("bench")

DEFAULT_RESAMPLES = 1000
DEFAULT_HEAVY_RESAMPLES = 100
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Bootstrap:
    """Settings of an image bootstrap; recorded with every interval (``asdict``).

    ``resamples``: draws for per-image means and sum-state metrics; ``heavy_resamples``:
    draws (the first ones of the same sequence) for FID/KID and other non-sum metrics;
    ``seed``: numpy ``default_rng`` seed; ``level``: central coverage of the percentile
    interval, in (0, 1).
    """

    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    level: float = DEFAULT_LEVEL
    heavy_resamples: int = DEFAULT_HEAVY_RESAMPLES

    def counts(self, n: int) -> np.ndarray:
        """``resamples``×n int64 multiplicities of n items (each row sums to n), seeded."""
        if n == 0:
            return np.zeros((self.resamples, 0), np.int64)
        rng = np.random.default_rng(self.seed)
        idx = rng.integers(0, n, size=(self.resamples, n))
        flat = idx + (np.arange(self.resamples) * n)[:, None]
        return np.bincount(flat.ravel(), minlength=self.resamples * n).reshape(self.resamples, n)

    def interval(self, replicates: np.ndarray) -> tuple[float, float]:
        """Percentile interval of the finite replicates (NaN, NaN when there are none)."""
        r = np.asarray(replicates, np.float64)
        r = r[np.isfinite(r)]
        if not len(r):
            return math.nan, math.nan
        tail = (1.0 - self.level) / 2 * 100
        lo, hi = np.percentile(r, [tail, 100 - tail])
        return float(lo), float(hi)

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "method": "percentile bootstrap over images"}


def percentile_intervals(samples: np.ndarray, boot: Bootstrap) -> np.ndarray:
    """Intervals of the mean of each row of ``samples`` (datasets × n), vectorised:
    (datasets × 2) array of [lo, hi]. Used by simulations of coverage."""
    samples = np.asarray(samples, np.float64)
    counts = boot.counts(samples.shape[1])
    means = samples @ counts.T / samples.shape[1]  # datasets × resamples
    tail = (1.0 - boot.level) / 2 * 100
    return np.percentile(means, [tail, 100 - tail], axis=1).T


# -- FID from features (exact low-rank form) ----------------------------------------------
def fid_from_features(rec: np.ndarray, ref: np.ndarray) -> float:
    """FID of two N×D feature sets as torch-fidelity defines it, without a D×D ``sqrtm``
    or ``eigvals`` (see :func:`bench.metrics.frechet.frechet_distance`)."""
    from bench.metrics.frechet import frechet_distance

    return frechet_distance(rec, ref)


# -- replicates ---------------------------------------------------------------------------
def merge_kind(metric: Metric) -> str:
    """"sum" (the base class's element-wise sum), "concat" (declared ``merge_kind``) or "custom"."""
    if type(metric).merge is Metric.merge:
        return "sum"
    return str(getattr(metric, "merge_kind", "custom"))


def _sum_replicates(metric: Metric, states: Sequence[State], counts: np.ndarray) -> list[dict[str, float]]:
    keys = set().union(*(s.keys() for s in states))
    template = metric.init()
    summed: dict[str, np.ndarray] = {}
    for k in keys:
        shape = np.shape(template.get(k, states[0].get(k, 0.0)))
        stack = np.stack([np.asarray(s.get(k, np.zeros(shape)), np.float64).reshape(-1) for s in states])
        summed[k] = (counts @ stack).reshape((len(counts), *shape))
    dtypes = {k: np.asarray(template.get(k, 0.0)).dtype for k in keys}
    out = []
    for b in range(len(counts)):
        state = {k: summed[k][b].astype(dtypes[k]) if dtypes[k].kind in "iu" else summed[k][b] for k in keys}
        out.append(metric.compute(state))
    return out


def kid_whole_set(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """torch-fidelity's unbiased MMD² (its ``mmd2``) of the multisets that repeat item i
    ``counts[b, i]`` times, for every row b of ``counts`` at once, from the kernel
    matrices of the distinct items: Σ_{i≠j} over a multiset is cᵀKc − Σᵢ cᵢKᵢᵢ.
    This is KID when the subset size equals the number of samples (N ≤ 1000: every
    subset is the whole set)."""
    c = np.asarray(counts, np.float64)
    m = c.sum(1)
    xx = np.einsum("bi,ij,bj->b", c, k_xx, c) - c @ np.diag(k_xx)
    yy = np.einsum("bi,ij,bj->b", c, k_yy, c) - c @ np.diag(k_yy)
    xy = np.einsum("bi,ij,bj->b", c, k_xy, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xx + yy) / (m * (m - 1)) - 2 * xy / (m * m)


def _concat_replicates(metric: Metric, states: Sequence[State], counts: np.ndarray) -> list[dict[str, float]]:
    """Feature-row states: FID through :func:`fid_from_features` on the drawn rows, KID
    through :func:`kid_whole_set` when a resample fits one subset; else the own compute."""
    name = getattr(metric, "name", "")
    if name in ("fid", "kid") and hasattr(metric, "features_of"):
        per = [metric.features_of(s) for s in states]  # one image each: (rec, ref, patch)
        rec = np.concatenate([p[0] for p in per])
        ref = np.concatenate([p[1] for p in per])
        owner = np.repeat(np.arange(len(per)), [len(p[0]) for p in per])
        row_counts = np.asarray(counts)[:, owner]
        if name == "fid":
            return [{"fid": fid_from_features(np.repeat(rec, c, axis=0), np.repeat(ref, c, axis=0))}
                    for c in row_counts]
        from torch_fidelity.metric_kid import kernel_poly

        from bench.metrics.fidelity import KID_MAX_SUBSET

        if row_counts.sum(1).max() <= KID_MAX_SUBSET:
            values = kid_whole_set(kernel_poly(rec, rec), kernel_poly(ref, ref), kernel_poly(rec, ref), row_counts)
            return [{"kid": float(v)} for v in values]
    out = []
    for c in counts:
        drawn = [(s, int(m)) for s, m in zip(states, c) if m]
        merged = {k: np.concatenate([np.repeat(np.asarray(s[k]), m, axis=0) for s, m in drawn])
                  for k in drawn[0][0]}
        out.append(metric.compute(merged))
    return out


def _custom_replicates(metric: Metric, states: Sequence[State], counts: np.ndarray) -> list[dict[str, float]]:
    return [metric.compute(metric.merge_all([s for s, m in zip(states, c) for _ in range(int(m))]))
            for c in counts]


REPLICATORS: dict[str, Callable[[Metric, Sequence[State], np.ndarray], list[dict[str, float]]]] = {
    "sum": _sum_replicates, "concat": _concat_replicates, "custom": _custom_replicates,
}


@dataclass
class Replicates:
    """Bootstrap replicates of one group of rows: key → (resamples,) array (heavy metrics'
    keys hold ``heavy_resamples`` values), ``n`` images, ``resamples`` per key."""

    values: dict[str, np.ndarray]
    n: int

    def resamples(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.values.items()}


def _weighted_mean(counts: np.ndarray, x: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x)
    num = counts @ np.where(finite, x, 0.0)
    den = counts @ finite.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def replicates(rows: Sequence[Row], metrics: Mapping[str, Metric | None], counts: np.ndarray,
               heavy: int = DEFAULT_HEAVY_RESAMPLES) -> Replicates:
    """Replicate values of every dataset-level and per-image key of ``rows`` (ok rows of one
    codec × rate, or of the common images of a paired comparison, in a fixed order) for the
    multiplicities ``counts`` (resamples × len(rows)). No network runs."""
    rows = list(rows)
    counts = np.asarray(counts, np.float64)
    out: dict[str, np.ndarray] = {}
    if not rows:
        return Replicates(out, 0)
    out["bpp"] = _weighted_mean(counts, np.array([math.nan if r.bpp is None else float(r.bpp) for r in rows]))
    produced: set[str] = set()
    for name, metric in metrics.items():
        # a metric that failed on some images (row.metric_errors) is resampled over the images
        # it was computed on, as summarise computes its value over them
        have = [i for i, r in enumerate(rows) if name in r.states]
        if metric is None or not have:
            continue
        kind = merge_kind(metric)
        use = (counts if kind == "sum" else counts[:heavy])[:, have].astype(np.int64)
        drawn = use.sum(1) > 0  # a resample that draws none of them has no value (NaN)
        try:
            computed = iter(REPLICATORS[kind](metric, [rows[i].states[name] for i in have], use[drawn]))
        except Exception as err:  # noqa: BLE001 - a metric that cannot be resampled gets no interval
            log.warning("%s: no bootstrap interval (%s: %s)", name, type(err).__name__, err)
            continue
        values = [next(computed) if d else {} for d in drawn]
        for key in dict.fromkeys(k for v in values for k in v):
            out[key] = np.array([float(v.get(key, math.nan)) for v in values])
            produced.add(key)
    per_image = dict.fromkeys(k for r in rows for k in r.metrics if not k.startswith("bpp_"))
    for key in per_image:
        if key in produced:
            continue
        x = np.array([float(r.metrics.get(key, math.nan)) for r in rows])
        out[key] = _weighted_mean(counts, x)
    return Replicates(out, len(rows))
