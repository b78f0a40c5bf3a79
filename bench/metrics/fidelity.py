"""FID and KID through torch-fidelity's Inception (``inception-v3-compat``, pool3, 2048-d).

Protocol (what torch-fidelity does with its own inputs): each image (or patch) is given
as a 3×H×W uint8 tensor; the extractor resizes it to 299×299 with TF1-compatible
bilinear interpolation and maps it to [-1, 1] itself. Features are float32 from the
network, stored and evaluated as float64 by torch-fidelity's own functions. FID equals
``calculate_metrics`` to ~1e-7 relative; KID differs from it only by torch-fidelity's float32
rounding of the kernel sums (~1e-7 × the kernel scale, absolute).

Per image the state holds the pool3 features of the reconstruction and of the original
(``rec``, ``ref``: k×2048 float64, k = 1 or the number of patches); the original's
features come from the :class:`~bench.runtime.refcache.RefCache`, so they are extracted once per
image whatever the number of codecs × rate points. ``compute`` merges these; FID is torch-fidelity's formula
(``fid_features_to_statistics`` / ``fid_statistics_to_metric``) computed through exact symmetric
forms (:mod:`bench.metrics.frechet`, equal within ~1e-12 relative, the originals' statistics
cached) and KID is torch-fidelity's own ``kid_features_to_metric`` (polynomial
kernel, subset size min(1000, N), 100 subsets, seed 2020 by default; ``kid_std`` from
subsets of min(1000, ⌊N/2⌋) when the value's subset is the whole set, see :class:`KID`).
Both are lower-is-better, unitless, ≥ 0 (KID can be slightly negative). N is reported with every value;
FID with N < 2048 is biased and its covariance rank-deficient: a warning is logged and
``fid_low_n`` = 1.

Patch mode (``patch=256``, HiFiC / Mentzer et al. 2020): ⌊H/p⌋·⌊W/p⌋ non-overlapping p×p
patches, plus (⌊H/p⌋−1)·(⌊W/p⌋−1) patches shifted by p/2; every patch is one sample.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.runtime import weights as W
from bench.runtime.devices import resolve_device
from bench.runtime.refcache import RefCache, default_cache

from ..codecs.base import Requirement
from ..errors import ConfigError, MetricError, WeightsError
from . import inception
from .base import Metric, Pair, State
from .frechet import frechet_distance
from .inception import (  # noqa: F401 - DIM, INCEPTION_WEIGHTS, save_random_inception, patch_origins: re-exported
    DIM,
    EXTRACTOR,
    FEATURE,
    INCEPTION_WEIGHTS,
    RANDOM_SEED,
    _random_weights_file,
    find_inception,
    inception_features,
    load_extractor,
    patch_origins,
    resolve_inception,
    save_random_inception,
)

if TYPE_CHECKING:  # torch is imported where a network runs: reading stored values needs none
    import torch

log = logging.getLogger("bench")

FID_MIN_N = 2048  # below this the 2048×2048 covariance is rank-deficient
KID_MAX_SUBSET = 1000  # torch-fidelity's default kid_subset_size
KID_MIN_SUBSET = 2    # the unbiased MMD estimate needs 2 samples per subset


# -- the metrics ------------------------------------------------------------------------
_LOADED: dict[tuple[str, str], torch.nn.Module] = {}  # (weights file, device) -> extractor
# Reconstruction features shared by FID and KID: the pipeline measures all of an image's
# codec × rate rows with FID before KID starts, so this holds more than one image's rows
# (--codecs all is ~60 rate points; 1024 × 16 KB = 16 MB at most).
_RECENT = RefCache(persist=False, capacity=1024)


def _native(features: np.ndarray) -> torch.Tensor:
    """float64 tensor for torch-fidelity's functions (its own pipeline would pass the network's
    float32: same formulas, but KID's kernel sums then carry ~1e-7·|k| rounding)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float64))


def _order_key(image: np.ndarray) -> int:
    arr = np.ascontiguousarray(image)
    return int.from_bytes(hashlib.sha256(arr.data).digest()[:8], "little")


class _InceptionMetric(Metric):
    """Shared by FID and KID: feature extraction, per-image state, merge by concatenation."""

    higher_is_better = False
    prefix: ClassVar[str] = ""
    #: ``merge`` concatenates feature rows (bench.analysis.stats resamples them without a network)
    merge_kind: ClassVar[str] = "concat"

    def __init__(self, *, patch: int | None = None, weights_path: str | None = None, batch_size: int = 16,
                 cache: RefCache | None = None, **options: Any) -> None:
        super().__init__(**options)
        if patch is not None and (int(patch) < 16 or int(patch) % 2):
            raise ConfigError(f"{self.name}: patch={patch} must be an even size >= 16 px", "e.g. patch: 256")
        self.patch = int(patch) if patch else None
        self.weights_path = weights_path
        self.batch_size = max(1, int(batch_size))
        self._cache = cache
        self._extractor: torch.nn.Module | None = None
        self._weights_sha256: str | None = None

    # -- weights ---------------------------------------------------------------------
    def requirements(self) -> list[Requirement]:
        spec = inception.INCEPTION_WEIGHTS  # looked up here: tests replace it
        found = find_inception(self.weights_path, self.weights_dir)
        if found is not None:
            return [Requirement("weights", spec.name, True, str(found))]
        if self.allow_random_weights:
            return [Requirement("weights", spec.name, True, "missing: random weights allowed (smoke test only)")]
        return [Requirement("weights", spec.name, False,
                            W.missing_message(spec, self.weights_path, self.weights_dir) + f"; get it from {spec.source}")]

    def extractor(self) -> torch.nn.Module:
        """The Inception feature extractor, loaded on first use and shared between instances."""
        import torch

        if self._extractor is not None:
            return self._extractor
        try:
            file = resolve_inception(self.weights_path, self.weights_dir, fetch=not self.allow_random_weights)
            sha = W.sha256_file(file)
        except WeightsError:
            if not self.allow_random_weights or find_inception(self.weights_path, self.weights_dir) is not None:
                raise
            log.warning("%s: Inception weights missing, using seeded random weights (smoke test only)", self.name)
            file = _random_weights_file(RANDOM_SEED)
            sha = f"random-seed{RANDOM_SEED}-torch{torch.__version__}"
            self.random_weights = True
        device = resolve_device(self.device)
        key = (str(file), device)
        if key not in _LOADED:
            _LOADED[key] = load_extractor(file, device)
        self._extractor, self._weights_sha256 = _LOADED[key], sha
        return self._extractor

    @property
    def protocol(self) -> str:
        return f"patch{self.patch}+shift{self.patch // 2}" if self.patch else "whole"

    def extractor_id(self) -> str:
        """Network, weights hash and input protocol: the RefCache namespace of these features."""
        self.extractor()
        return f"torch-fidelity/{EXTRACTOR}/pool3-{DIM}@{self._weights_sha256}/uint8-chw-tf1-bilinear-299/{self.protocol}"

    def prepare(self) -> None:
        self.extractor()

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update({"feature_extractor": f"torch-fidelity {EXTRACTOR} pool3 ({DIM}-d)", "protocol": self.protocol})
        if self._weights_sha256:
            out["weights_sha256"] = self._weights_sha256
        return out

    # -- features --------------------------------------------------------------------
    def crops(self, image: np.ndarray) -> list[np.ndarray]:
        """The whole image, or its HiFiC patches."""
        if not self.patch:
            return [image]
        p = self.patch
        return [image[y:y + p, x:x + p] for y, x in patch_origins(image.shape[0], image.shape[1], p)]

    def features(self, image: np.ndarray) -> np.ndarray:
        """k×2048 float64 features of one image (k = 1 or its number of patches), uncached."""
        return inception_features(self.extractor(), self.crops(image), self.batch_size)

    @property
    def cache(self) -> RefCache:
        if self._cache is None:
            self._cache = default_cache()
        return self._cache

    # -- Metric API ------------------------------------------------------------------
    def init(self) -> State:
        return {"rec": np.zeros((0, DIM)), "ref": np.zeros((0, DIM)),
                "order": np.zeros((0, 2), dtype=np.uint64), "patch_px": np.zeros((0,))}

    def update_batch(self, states: Sequence[State], pairs: Sequence[Pair]) -> list[dict[str, float]]:
        """Extract the reconstructions' features in one forward per image size, then update."""
        ident = self.extractor_id()
        todo = [p.reconstruction for p in pairs
                if p.reconstruction.ndim == 3 and _RECENT.get(p.reconstruction, ident) is None]
        by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
        for rec in todo:
            by_shape.setdefault(rec.shape, []).append(rec)
        for recs in by_shape.values():
            crops = [self.crops(r) for r in recs]
            feats = inception_features(self.extractor(), [c for cs in crops for c in cs], self.batch_size)
            start = 0
            for rec, cs in zip(recs, crops):
                _RECENT.put(rec, ident, feats[start:start + len(cs)])
                start += len(cs)
        return [self.update(state, pair) for state, pair in zip(states, pairs)]

    def update(self, state: State, pair: Pair) -> dict[str, float]:
        ref, rec = pair.sample.image, pair.reconstruction
        if ref.shape != rec.shape or ref.dtype != np.uint8 or rec.dtype != np.uint8 or ref.ndim != 3:
            raise MetricError(f"{self.name} takes same-size H×W×3 uint8 images, got {ref.dtype}{ref.shape} "
                              f"and {rec.dtype}{rec.shape}", "the codec's decode must return the original H×W×3")
        ident = self.extractor_id()
        ref_f = np.asarray(self.cache.get_or_compute(ref, ident, lambda: self.features(ref)), dtype=np.float64)
        rec_f = np.asarray(_RECENT.get_or_compute(rec, ident, lambda: self.features(rec)), dtype=np.float64)
        k = len(rec_f)
        state["rec"] = np.concatenate([state["rec"], rec_f])
        state["ref"] = np.concatenate([state["ref"], ref_f])
        order = np.stack([np.full(k, _order_key(ref), dtype=np.uint64), np.arange(k, dtype=np.uint64)], axis=1)
        state["order"] = np.concatenate([state["order"], order])
        state["patch_px"] = np.concatenate([state["patch_px"], [float(self.patch or 0)]])
        return {}

    def merge(self, a: State, b: State) -> State:
        """Concatenate the feature rows (order is restored in :meth:`features_of`)."""
        keys = set(a) | set(b)
        return {k: np.concatenate([a[k], b[k]]) if k in a and k in b else np.array(a.get(k, b.get(k)), copy=True)
                for k in keys}

    def features_of(self, state: State) -> tuple[np.ndarray, np.ndarray, float]:
        """(rec, ref, patch size) with rows in a canonical order (image hash, patch index),
        so the value does not depend on the order states were merged in."""
        rec, ref = np.asarray(state["rec"], np.float64), np.asarray(state["ref"], np.float64)
        if rec.shape != ref.shape:
            raise MetricError(f"{self.name}: state has {len(rec)} reconstruction and {len(ref)} reference rows",
                              "the run store is inconsistent: re-run the affected rows")
        patches = np.unique(np.asarray(state.get("patch_px", np.zeros(0))))
        if len(patches) > 1:
            raise MetricError(f"{self.name}: states mix patch sizes {patches.tolist()}",
                              "do not merge whole-image and patch FID states")
        order = np.asarray(state.get("order", np.zeros((len(rec), 2), np.uint64)))
        idx = np.lexsort((order[:, 1], order[:, 0])) if len(order) == len(rec) else np.arange(len(rec))
        return rec[idx], ref[idx], float(patches[0]) if len(patches) else 0.0

    def n_images(self, state: State) -> int:
        return int(np.asarray(state.get("patch_px", np.zeros(0))).shape[0])


class FID(_InceptionMetric):
    """Fréchet Inception Distance (torch-fidelity), reconstructions vs originals; lower is better.

    Values: ``fid``; ``fid_n`` samples (images or patches); ``fid_images``; ``fid_patch``
    (0 = whole image); ``fid_low_n`` = 1 when N < 2048 (biased, rank-deficient).
    """

    name = "fid"
    version = "1"

    def compute(self, state: State) -> dict[str, float]:
        """torch-fidelity's FID formula, computed by :func:`bench.metrics.frechet.frechet_distance`
        (exact symmetric forms, the originals' statistics cached; equal within ~1e-12 relative)."""
        rec, ref, patch = self.features_of(state)
        n = len(rec)
        out = {"fid_n": float(n), "fid_images": float(self.n_images(state)), "fid_patch": patch,
               "fid_low_n": float(n < FID_MIN_N)}
        if n < 2:
            return {"fid": math.nan, **out}
        warned = self.__dict__.setdefault("_warned_n", set())
        if n < FID_MIN_N and n not in warned:  # once per N and instance: reports compute every rate point
            warned.add(n)
            log.warning("FID from N=%d < %d samples is biased and its covariance rank-deficient; "
                        "compare only values with the same N", n, FID_MIN_N)
        return {"fid": frechet_distance(rec, ref), **out}


def kid_subset_size(n: int) -> int:
    """Subset size of KID's spread for N samples: min(1000, ⌊N/2⌋), so that the subsets are
    random halves (or 1000-sample draws) of the set and their spread (``kid_std``) says
    something; 0 when N < 4 (no two distinct subsets of 2 or more)."""
    return min(KID_MAX_SUBSET, n // 2) if n >= 2 * KID_MIN_SUBSET else 0


class KID(_InceptionMetric):
    """Kernel Inception Distance (torch-fidelity, cubic polynomial kernel); lower is better.

    ``kid``: torch-fidelity's protocol, the mean unbiased MMD² over ``subsets`` (default 100)
    random subsets of ``subset_size`` (default min(1000, N), torch-fidelity's) drawn with
    ``seed`` (default 2020, torch-fidelity's); when that is the whole set (N ≤ 1000) it is one
    subset, the plain unbiased MMD² of all samples (as :mod:`bench.analysis.stats` assumes).
    ``kid_std``: the standard deviation over the subsets when they are smaller than N; when the
    value's subset is the whole set, over 100 subsets of :func:`kid_subset_size` =
    min(1000, ⌊N/2⌋) instead (the spread of KID on half the data; ``kid_std_subset_size``
    records it; NaN for N < 4) — no longer the 0 that identical whole-set subsets gave. For an
    interval of the value itself use ``--ci`` (bootstrap over images).
    Also ``kid_n``, ``kid_subset_size``, ``kid_subsets``, ``kid_patch``.
    """

    name = "kid"
    version = "2"  # 2: kid_std from half-size subsets when the value uses the whole set (was always 0)

    def __init__(self, *, subsets: int = 100, seed: int = 2020, subset_size: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.subsets = int(subsets)
        self.seed = int(seed)
        if subset_size is not None and int(subset_size) < KID_MIN_SUBSET:
            raise ConfigError(f"kid: subset_size={subset_size} is under {KID_MIN_SUBSET}",
                              "leave it unset (min(1000, N)) or give 2 or more")
        self.subset_size = int(subset_size) if subset_size is not None else None

    def describe(self) -> dict[str, Any]:
        size = self.subset_size if self.subset_size is not None else f"min({KID_MAX_SUBSET}, N)"
        return {**super().describe(), "subsets": self.subsets, "seed": self.seed, "subset_size": size,
                "std_subset_size": f"subset_size if < N, else min({KID_MAX_SUBSET}, N // 2)"}

    def compute(self, state: State) -> dict[str, float]:
        from torch_fidelity.metric_kid import (
            KEY_METRIC_KID_MEAN,
            KEY_METRIC_KID_STD,
            kid_features_to_metric,
        )

        rec, ref, patch = self.features_of(state)
        n = len(rec)
        size = min(self.subset_size or KID_MAX_SUBSET, n)
        subsets = self.subsets if size < n else 1  # the whole set drawn 100 times is one subset
        out = {"kid_n": float(n), "kid_subset_size": float(size), "kid_subsets": float(subsets),
               "kid_patch": patch}
        if size < KID_MIN_SUBSET:
            return {"kid": math.nan, "kid_std": math.nan, "kid_std_subset_size": 0.0, **out}

        def kid(subset_size: int, n_subsets: int) -> dict[str, float]:
            return kid_features_to_metric(_native(rec), _native(ref), kid_subsets=n_subsets,
                                          kid_subset_size=subset_size, rng_seed=self.seed, verbose=False)

        values = kid(size, subsets)
        std_size = size if size < n else kid_subset_size(n)
        if std_size == size:
            std = float(values[KEY_METRIC_KID_STD])
        else:
            std = float(kid(std_size, self.subsets)[KEY_METRIC_KID_STD]) if std_size >= KID_MIN_SUBSET else math.nan
        return {"kid": float(values[KEY_METRIC_KID_MEAN]), "kid_std": std, "kid_std_subset_size": float(std_size),
                **out}
