"""Reading a run is cheap once FID/KID are stored; the exact FID beats torch-fidelity's.

1. Runs ``bench run --no-report`` into an empty folder (jpeg at 26 qualities on the demo
   images, PSNR + FID + KID with random-weights Inception; a second run ``--tag b``, served
   from the result cache), then times ``bench report`` (first: every curve drawn; second:
   nothing changed, nothing drawn), ``bench report --html``, ``bench figures --preset all``
   (first and second) and ``bench compare`` as subprocesses (import start-up included) and
   prints each as seconds and as a share of the first run's own wall time (targets: ≤ 5 %
   and ≤ 3 s).
2. Times FID on 2048-d stand-in features: torch-fidelity (``fid_features_to_statistics`` +
   ``fid_statistics_to_metric``, a 2048×2048 ``eigvals``) against
   :func:`bench.metrics.frechet.frechet_distance` (reference factor cached as it is for every
   rate point after the first), for N > 2048 (full-rank statistics) and N < 2048 (low-rank
   form), per rate point as the median over 5 rate points, and prints the speed-up and the
   largest relative difference (target: ≥ 5×, ≤ 1e-6 where torch-fidelity's own value is
   exact, i.e. full-rank statistics).

   With ``--kodak DIR`` the run is the issue's own instead: 6 Kodak images, jpeg, jpeg2000,
   webp, bpg and original at their cards' points (7 + 6 + 7 + 5 + 1 = 26), ``--metrics all``
   (metric networks with random weights where none are present; bpgenc on PATH).

    python benchmarks/report_speed.py [--images 5] [--out /tmp/bench-report-speed] [--fid-n 2100]
    python benchmarks/report_speed.py --kodak ../shared/data/kodak --skip-fid --out DIR
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

QUALITIES = [str(q) for q in (2, 5, 8, 10, 13, 16, 20, 24, 28, 32, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80,
                              84, 88, 91, 94, 97, 100)]


def _bench(out: Path, *args: str) -> float:
    """Seconds of one ``bench`` CLI call (fails loudly)."""
    cmd = [sys.executable, "-m", "bench", "--out", str(out), *args]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode not in (0, 6):  # 6: compare found a regression (a verdict, not a failure)
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def _run_id(out: Path, tag: str | None) -> str:
    from bench.storage.store import Store

    with Store(out / "bench.sqlite", readonly=True) as store:
        runs = [r for r in store.runs() if r["meta"].get("tag") == tag]
    return max(runs, key=lambda r: r["updated"])["run_id"]


def cli_part(out: Path, images: int, kodak: Path | None) -> None:
    if kodak is None:
        common = ["--dataset", "demo", "--limit", str(images), "--codecs", "jpeg", "--rates", ",".join(QUALITIES),
                  "--metrics", "psnr,fid,kid"]
        what = f"{images} demo images x {len(QUALITIES)} jpeg rate points, psnr+fid+kid"
    else:
        common = ["--dataset", "kodak", "--root", str(kodak), "--limit", "6", "--codecs",
                  "jpeg,jpeg2000,webp,bpg,original", "--metrics", "all"]
        what = "6 Kodak images x 26 rate points (jpeg, jpeg2000, webp, bpg, original), all metrics"
    common += ["--allow-random-weights", "-q", "--no-report"]
    if (out / "bench.sqlite").exists():  # a stored run would be served from the result cache
        raise SystemExit(f"{out} already holds a run store: pass an empty --out folder")
    t_run = _bench(out, "run", *common)
    _bench(out, "run", *common, "--tag", "b")
    a, b = _run_id(out, None), _run_id(out, "b")
    timings = {
        "report": _bench(out, "report", a),
        "report (2nd)": _bench(out, "report", a),
        "report --html": _bench(out, "report", "--html", a),
        "figures --preset all": _bench(out, "figures", "--preset", "all", "--dest", str(out / "figs"), a),
        "figures (2nd)": _bench(out, "figures", "--preset", "all", "--dest", str(out / "figs"), a),
        "compare": _bench(out, "compare", a, b),
    }
    print(f"run: {what}: {t_run:.1f} s wall")
    print(f"{'command':<24}{'seconds':>9}{'% of run':>10}  targets: <= 3 s, <= 5 %")
    for name, s in timings.items():
        print(f"{name:<24}{s:>9.2f}{100 * s / t_run:>9.1f}%  {'ok' if s <= 3 and s <= 0.05 * t_run else 'OVER'}")


def fid_part(n_full: int, n_low: int, points: int = 5) -> None:
    """Median seconds per rate point over ``points`` rate points (reconstructions scaled by
    1.01, 1.02, …) against the same reference, ours and torch-fidelity's, interleaved."""
    import torch
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    from bench.metrics.fidelity import DIM
    from bench.metrics.frechet import clear_cache, frechet_distance

    def torch_fidelity(rec: np.ndarray, ref: np.ndarray) -> float:
        return float(fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(rec)),
                                              fid_features_to_statistics(torch.from_numpy(ref)), False)[KEY_METRIC_FID])

    def timed(fn: Any, *args: Any) -> tuple[float, float]:
        # numpy and scipy each load their own OpenBLAS, whose idle threads spin ~0.1 s after a
        # call: without a pause each timing would pay for the previous call's spinning threads
        time.sleep(0.3)
        t = time.perf_counter()
        value = fn(*args)
        return time.perf_counter() - t, value

    rng = np.random.default_rng(0)
    mix = np.eye(DIM) + 0.05 * rng.normal(size=(DIM, DIM))
    print(f"FID on {DIM}-d features ({os.environ.get('OMP_NUM_THREADS', 'all')} BLAS threads), "
          f"median of {points} rate points")
    print(f"{'N':>6}{'torch-fidelity s':>18}{'bench s':>10}{'first call s':>14}{'speed-up':>10}{'rel diff':>11}")
    for n in (n_full, n_low):
        ref = np.maximum(rng.normal(size=(n, DIM)) @ mix, 0) * 0.3
        rec = np.maximum(ref + rng.normal(0, 0.1, size=ref.shape), 0)
        clear_cache()
        t_first, _ = timed(frechet_distance, rec, ref)  # the first rate point also builds the reference's factor
        ours, theirs, diff = [], [], 0.0
        for k in range(1, points + 1):  # the next rate points: same reference, other reconstructions
            other = rec * (1 + k / 100)
            t_o, v_o = timed(frechet_distance, other, ref)
            t_t, v_t = timed(torch_fidelity, other, ref)
            ours.append(t_o)
            theirs.append(t_t)
            diff = max(diff, abs(v_o - v_t) / v_t)
        t_ours, t_tf = float(np.median(ours)), float(np.median(theirs))
        print(f"{n:>6}{t_tf:>18.2f}{t_ours:>10.2f}{t_first:>14.2f}{t_tf / t_ours:>9.1f}x{diff:>11.1e}"
              + ("  (N < D: torch-fidelity's eigvals adds spurious roots)" if n <= DIM else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5, help="demo images (it has 5)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default: a temporary one, removed)")
    ap.add_argument("--kodak", type=Path, default=None, help="Kodak folder: time the issue's 26-point run")
    ap.add_argument("--fid-n", type=int, default=2100, help="N of the full-rank FID timing (> 2048)")
    ap.add_argument("--fid-n-low", type=int, default=500, help="N of the low-rank FID timing (< 2048)")
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--skip-fid", action="store_true")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-report-speed-"))
    try:
        if not args.skip_cli:
            cli_part(out, args.images, args.kodak)
        if not args.skip_fid:
            fid_part(args.fid_n, args.fid_n_low)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
