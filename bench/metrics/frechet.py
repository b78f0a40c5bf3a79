"""Exact Fréchet distance of two feature sets, faster than torch-fidelity's ``eigvals``.

torch-fidelity computes ``‖μ₁−μ₂‖² + tr Σ₁ + tr Σ₂ − 2 Σ √eig(Σ₁Σ₂)`` with Σ from ``np.cov``
(N−1) and a general (non-symmetric) ``np.linalg.eigvals`` of the D×D product: 1.6–10 s at
D = 2048. The eigenvalues of Σ₁Σ₂ are those of symmetric matrices, so the same number comes
from cheaper, better-conditioned problems:

* N ≤ D (any set smaller than the feature dimension, e.g. 24 Kodak images): with centred
  features X̃ᵢ, Σ₁Σ₂'s non-zero eigenvalues are the squared singular values of
  C = X̃₁X̃₂ᵀ/√((N₁−1)(N₂−1)) (N₁×N₂), so tr √(Σ₁Σ₂) is C's nuclear norm;
* N > D: Σ_ref = L Lᵀ with L its lower Cholesky factor (or B = V √Λ from ``eigh`` when Σ_ref
  is not positive definite), cached per reference feature set (the originals of a dataset are
  the same at every codec × rate point), and tr √(Σ₁Σ₂) = Σ √eig(Lᵀ Σ_rec L). With
  Y = Lᵀ X̃_recᵀ (a triangular product, half a general one's work), Lᵀ Σ_rec L = Y Yᵀ/(N−1)
  (a symmetric rank-k update, half again), then one symmetric ``eigvalsh`` (LAPACK ``evr``).

Both equal torch-fidelity's value to ~1e-12 relative (its own ``eigvals`` carries ~1e-13
noise). Units: the features' squared units; ≥ 0 up to rounding.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

_CACHE_SIZE = 4  # reference factors kept (each D×D float64: 32 MB at D = 2048)


@dataclass(frozen=True)
class Reference:
    """What the Fréchet distance needs of the reference set: mean, covariance trace, and
    either its centred features (N ≤ D) or a factor B with Σ = B Bᵀ (N > D): lower triangular
    (Cholesky) when ``triangular``, else V √Λ."""

    mu: np.ndarray
    trace: float
    n: int
    centred: np.ndarray | None = None
    factor: np.ndarray | None = None
    triangular: bool = False


_REFERENCES: OrderedDict[str, Reference] = OrderedDict()


def _key(features: np.ndarray) -> str:
    arr = np.ascontiguousarray(features, dtype=np.float64)  # sha256: 3× blake2b's speed on SHA-NI CPUs
    h = hashlib.sha256(str(arr.shape).encode() + b"\0")
    h.update(arr.data)
    return h.hexdigest()


def reference(features: np.ndarray, *, factor: bool | None = None) -> Reference:
    """The cached :class:`Reference` of an N×D feature set (computed once per content).
    ``factor``: force (True) or skip (False) the D×D factor; default: when N > D."""
    x = np.asarray(features, np.float64)
    n, d = x.shape
    need_factor = n > d if factor is None else factor
    key = f"{_key(x)}/{int(need_factor)}"
    hit = _REFERENCES.get(key)
    if hit is not None:
        _REFERENCES.move_to_end(key)
        return hit
    mu = x.mean(0)
    centred = x - mu
    trace = float(np.einsum("ij,ij->", centred, centred)) / (n - 1) if n > 1 else math.nan
    if need_factor:
        from scipy.linalg import LinAlgError, cholesky  # 0.17 s of import: only when a factor is made

        cov = centred.T @ centred / (n - 1)
        try:
            ref = Reference(mu, trace, n, factor=np.asfortranarray(cholesky(cov, lower=True, check_finite=False)),
                            triangular=True)
        except LinAlgError:  # singular (e.g. a constant feature): the eigen-factor holds for any PSD Σ
            w, v = np.linalg.eigh(cov)
            ref = Reference(mu, trace, n, factor=v * np.sqrt(np.clip(w, 0, None)))
    else:
        ref = Reference(mu, trace, n, centred=centred)
    _REFERENCES[key] = ref
    while len(_REFERENCES) > _CACHE_SIZE:
        _REFERENCES.popitem(last=False)
    return ref


def clear_cache() -> None:
    """Forget the cached reference factors."""
    _REFERENCES.clear()


def _trace_sqrt(x1: np.ndarray, r: Reference) -> float:
    """tr √(Σ₁ Σ_ref) = Σ √eig(Bᵀ Σ₁ B) for centred rows ``x1`` (N₁ > 1), Σ_ref = B Bᵀ."""
    from scipy.linalg import blas, eigh

    b = r.factor
    assert b is not None
    if r.triangular:  # Y = Lᵀ X̃₁ᵀ in place on X̃₁ᵀ (D×N₁, Fortran order: no copy)
        y = blas.dtrmm(1.0, b, x1.T, side=0, lower=1, trans_a=1, overwrite_b=1)
    else:
        y = (x1 @ b).T
    # lower triangle of Y Yᵀ/(N₁−1) = Bᵀ Σ₁ B: OpenBLAS's tridiagonal reduction of the lower
    # triangle takes ~10 % less time than of the upper (0.28 vs 0.31–0.33 s at D = 2048, 2 cores)
    gram = blas.dsyrk(1.0 / (len(x1) - 1), y, lower=1)
    w = eigh(gram, lower=True, eigvals_only=True, overwrite_a=True, check_finite=False, driver="evr")
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(rec: np.ndarray, ref: np.ndarray) -> float:
    """FID of two N×D feature sets (rows = samples) exactly as torch-fidelity defines it;
    NaN when either set has fewer than 2 rows. ``ref``'s statistics are cached."""
    rec = np.asarray(rec, np.float64)
    n1, n2 = len(rec), len(ref)
    if n1 < 2 or n2 < 2:
        return math.nan
    d = rec.shape[1]
    low_rank = min(n1, n2) <= d
    r = reference(ref, factor=not low_rank)
    mu1 = rec.mean(0)
    x1 = rec - mu1
    tr1 = float(np.einsum("ij,ij->", x1, x1)) / (n1 - 1)
    if low_rank:
        if r.centred is None:  # pragma: no cover - reference() built it for this case
            raise AssertionError("low-rank reference without features")
        cross = (x1 @ r.centred.T) / math.sqrt((n1 - 1) * (n2 - 1))
        tr_sqrt = float(np.linalg.svd(cross, compute_uv=False).sum())
    else:
        tr_sqrt = _trace_sqrt(x1, r)
    diff = mu1 - r.mu
    return float(diff @ diff + tr1 + r.trace - 2.0 * tr_sqrt)
