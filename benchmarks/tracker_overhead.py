"""Tracker overhead: wall time that logging adds to the evaluations it logs, as in a training.

A "training" is ``--evals`` evaluations (``bench.evaluate``: jpeg and webp at 3 qualities on
``--limit`` demo images, PSNR + MS-SSIM, each into a fresh store so nothing is cached), logged
through one tracker opened before the first and closed after the last (as ``BenchCallback``
does). Each tracker starts from an empty folder, so MLflow's first call (import, creating its
sqlite store; its empty-store copy makes a second ``mlflow`` in the list a new folder's first
call) is included. Prints per tracker: evaluation seconds without logging, with
logging (open + writes + close, i.e. until every point is on disk) and the ratio of the
difference to the evaluation time. ``--sync`` also measures the trackers written in this
process (``background=False``), the pre-#25 behaviour. ``--size HxW`` resizes the demo images
(default 256x512): ``--evals 5 --limit 5 --size 512x1024`` is closer to a training's evaluation
(a few seconds each), over which the trackers' fixed costs (imports, stores, services) spread.

    python benchmarks/tracker_overhead.py [--evals 3] [--limit 4] [--size 256x512] [--trackers tensorboard,mlflow,wandb] [--sync]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

SIZE: dict[str, int] = {}  # the demo dataset's height and width (--size)


def training(root: Path, evals: int, limit: int, tracker: str | None, background: bool) -> float:
    """Seconds for ``evals`` evaluations, logged to ``tracker`` (opened once) when given."""
    from bench import evaluate
    from bench.integrations.trackers import open_tracker

    start = time.perf_counter()
    opened = open_tracker(f"{tracker}:{root / tracker}", root, background=background) if tracker else None
    try:
        for step in range(evals):
            evaluate(["jpeg", "webp"], "demo", metrics=["psnr", "msssim"], limit=limit,
                     rates={"jpeg": [20, 50, 80], "webp": [20, 50, 80]}, store=root / f"s{step}.sqlite",
                     log=opened, step=step, progress=False, dataset_params=SIZE)
    finally:
        if opened is not None:
            opened.close()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evals", type=int, default=3)
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--size", default="256x512", help="demo image size HxW (the card's: 256x512)")
    ap.add_argument("--trackers", default="tensorboard,mlflow,wandb")
    ap.add_argument("--sync", action="store_true", help="also the in-process (synchronous) trackers")
    args = ap.parse_args()
    height, _, width = args.size.partition("x")
    SIZE.update(height=int(height), width=int(width))
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BENCH_CACHE_DIR"] = str(Path(tmp) / "cache")  # MLflow's first store ever: migrated here
        training(Path(tmp) / "warm", 1, 1, None, True)  # imports and caches of the evaluation itself
        base = training(Path(tmp) / "base", args.evals, args.limit, None, True)
        print(f"{args.evals} evaluations of {args.limit} demo images at {args.size} without a tracker: {base:.2f} s")
        print(f"{'tracker':<12} {'mode':<11} {'seconds':>8} {'overhead':>9}")
        for i, tracker in enumerate(t for t in args.trackers.split(",") if t):
            for background in (True, False) if args.sync else (True,):
                again = training(Path(tmp) / f"b{i}{tracker}", args.evals, args.limit, None, True)
                took = training(Path(tmp) / f"{i}{tracker}{background}", args.evals, args.limit, tracker, background)
                ref = (base + again) / 2
                mode = "background" if background else "in-process"
                print(f"{tracker:<12} {mode:<11} {took:8.2f} {(took - ref) / ref:9.1%}")


if __name__ == "__main__":
    main()
