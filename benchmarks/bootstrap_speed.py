"""Bootstrap replicates of FID and KID: bench.analysis.stats' paths vs the metrics' own compute.

For N images with stand-in 2048-d Inception features (no network), times one replicate
of FID through torch-fidelity (``FID.compute``: a 2048×2048 sqrtm) against
:func:`bench.analysis.stats.fid_from_features` (the exact low-rank form), and R KID replicates
through ``KID.compute`` (100 subsets) against :func:`bench.analysis.stats.kid_whole_set` (kernel
matrices once, every replicate vectorised). Prints seconds per replicate and the ratios,
and the largest relative difference of the values.

    python benchmarks/bootstrap_speed.py [--images 500] [--resamples 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--resamples", type=int, default=20)
    args = ap.parse_args()

    from bench.analysis.stats import Bootstrap, replicates
    from bench.metrics.fidelity import DIM, FID, KID
    from bench.storage.store import Row

    rng = np.random.default_rng(0)
    mix = rng.normal(size=(DIM, DIM)) / np.sqrt(DIM)
    rows = []
    for i in range(args.images):
        rec = np.abs(rng.normal(size=(1, DIM)) @ mix)
        ref = np.abs(rng.normal(0.1, 1.0, size=(1, DIM)) @ mix)
        state = {"rec": rec, "ref": ref, "order": np.array([[i, 0]], np.uint64), "patch_px": np.zeros(1)}
        rows.append(Row("c", "1", f"i{i}", bpp=1.0, states={"fid": state, "kid": state}))
    fid, kid = FID(allow_random_weights=True), KID(allow_random_weights=True)
    boot = Bootstrap(resamples=args.resamples, heavy_resamples=args.resamples, seed=0)
    counts = boot.counts(len(rows))

    def drawn(metric, c):
        return metric.merge_all(r.states[metric.name] for r, m in zip(rows, c) for _ in range(m))

    t = time.perf_counter()
    own_fid = fid.compute(drawn(fid, counts[0]))["fid"]
    t_own_fid = time.perf_counter() - t
    t = time.perf_counter()
    fast = replicates(rows, {"fid": fid}, counts, args.resamples).values["fid"]
    t_fast_fid = (time.perf_counter() - t) / args.resamples
    k = min(3, args.resamples)
    t = time.perf_counter()
    own_kid = [kid.compute(drawn(kid, c))["kid"] for c in counts[:k]]
    t_own_kid = (time.perf_counter() - t) / k
    t = time.perf_counter()
    fast_kid = replicates(rows, {"kid": kid}, counts, args.resamples).values["kid"]
    t_fast_kid = (time.perf_counter() - t) / args.resamples
    print(f"N = {args.images} images, {args.resamples} resamples")
    print(f"FID per replicate: torch-fidelity {t_own_fid:.3f} s, bench.analysis.stats {t_fast_fid:.4f} s "
          f"({t_own_fid / t_fast_fid:.0f}x); rel. diff {abs(fast[0] - own_fid) / abs(own_fid):.1e}")
    diff = max(abs(a - b) / abs(b) for a, b in zip(fast_kid[:k], own_kid))
    print(f"KID per replicate: torch-fidelity {t_own_kid:.3f} s, bench.analysis.stats {t_fast_kid:.4f} s "
          f"({t_own_kid / t_fast_kid:.0f}x); rel. diff {diff:.1e}")


if __name__ == "__main__":
    main()
