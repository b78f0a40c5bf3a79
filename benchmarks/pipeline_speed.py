"""Full pipeline vs a naive seeds-style loop, measured in one run on one machine.

Naive baseline (how the seeds' evaluation scripts work): for every codec, rate point and
image, in that order: load the image, encode, decode, and compute every metric with
batch size 1 — the originals' Inception features and segmentation recomputed each time.
Ours: ``bench.runner.execute`` (reference cache, batched metrics, codec worker pool
overlapped with metric work). Then the incremental case: the same run with one rate point
added per codec, against the cold run.

Metric networks use random weights (timing only: the architectures are the real ones).
Prints images/s, naive/ours, cold/incremental, peak RSS and the share of wall time spent
outside codec and network calls.

    python benchmarks/pipeline_speed.py [--dataset demo] [--limit 5] [--codecs jpeg,webp,jpeg2000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path



class RssSampler:
    """Peak RSS of this process plus its live children (codec workers), sampled every 0.2 s.

    (RUSAGE_CHILDREN is useless here: a forked helper such as ``git`` reports its parent's RSS.)
    """

    def __init__(self) -> None:
        import threading

        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.2):
            try:
                total = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:
                continue
            self.peak = max(self.peak, total / 2**20)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def naive(dataset, codecs, rates, metrics) -> tuple[int, float]:
    """The seeds' way: per image, batch 1, originals' features recomputed every time."""
    from bench.metrics.pixel import msssim_rgb, mse_uint8, psnr_from_mse

    by_name = {m.name: m for m in metrics}
    n = 0
    t0 = time.perf_counter()
    for codec in codecs:
        for rate in rates[codec.name]:
            for image_id in dataset.ids()[: ARGS.limit]:
                sample = dataset.get(image_id)
                ref = sample.image
                rec = codec.decode(codec.encode(ref, rate).parts)
                psnr_from_mse(mse_uint8(ref, rec))
                msssim_rgb(ref, rec)
                if "lpips" in by_name:
                    by_name["lpips"].distances([ref], [rec])
                if "fid" in by_name:  # features of the original recomputed for every codec × rate
                    by_name["fid"].features(ref)
                    by_name["fid"].features(rec)
                if "miou" in by_name:
                    by_name["miou"].segmenter.predict(ref)
                    by_name["miou"].segmenter.predict(rec)
                n += 1
    return n, time.perf_counter() - t0


def main() -> int:
    import torch

    from bench.runner import RunConfig, execute, make_plan
    from bench.store import Store

    torch.set_num_threads(ARGS.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-speed-"))
    os.environ["BENCH_CACHE_DIR"] = str(work / "refcache")
    codecs_names = ARGS.codecs.split(",")
    metrics_names = ARGS.metrics.split(",")
    opts = {"allow_random_weights": True, "device": ARGS.device}
    config = RunConfig(ARGS.dataset, codecs_names, metrics_names, limit=ARGS.limit, metric_options=opts,
                       workers=ARGS.workers, batch_size=ARGS.batch_size)
    plan = make_plan(config)
    rates = {c.name: plan.rates[c.name][: ARGS.rates] for c in plan.codecs}
    first = plan.codecs[0]
    rates[first.name] = plan.rates[first.name][: min(ARGS.rates, len(plan.rates[first.name]) - 1)]  # hold one out
    config.rates = {name: [c.rate_label(r) for r in rates[name]] for name, c in ((c.name, c) for c in plan.codecs)}
    # warm up: load every network once (both sides pay model loading outside the timing)
    sample = plan.dataset.get(plan.ids[0])
    for m in plan.metrics:
        from bench.metrics.base import Pair

        m.update(m.init(), Pair(sample, sample.image.copy(), 0))

    n_naive, t_naive = naive(plan.dataset, plan.codecs, rates, plan.metrics)

    with Store(work / "bench.sqlite") as store, RssSampler() as rss:
        t0 = time.perf_counter()
        run_id = execute(config, store, progress=False)
        t_ours = time.perf_counter() - t0
        rows = list(store.rows(run_id))
        n_ours = len(rows)
        inside = sum(sum(r.seconds.values()) for r in rows)
        failed = sum(r.status != "ok" for r in rows)

        # one more rate point (for the first codec: the next default point not yet used)
        more = {c.name: [c.rate_label(r) for r in rates[c.name]] for c in plan.codecs}
        more[first.name] += [first.rate_label(r) for r in plan.rates[first.name] if r not in rates[first.name]][:1]
        config.rates = more
        t0 = time.perf_counter()
        execute(config, store, progress=False)
        t_incr = time.perf_counter() - t0

    # overhead share measured inline (workers=1), where codec and network time add up to wall time
    with Store(work / "inline.sqlite") as store:
        config.rates = {name: [c.rate_label(r) for r in rates[name]] for name, c in ((c.name, c) for c in plan.codecs)}
        config.workers, config.use_cache = 1, False
        t0 = time.perf_counter()
        inline_id = execute(config, store, progress=False)
        t_inline = time.perf_counter() - t0
        inside_inline = sum(sum(r.seconds.values()) for r in store.rows(inline_id))

    print(f"machine: {os.cpu_count()} cores, torch threads {ARGS.threads}, device {ARGS.device or 'auto'}")
    print(f"work: {len(plan.ids)} images x {sum(len(v) for v in rates.values())} codec-rate points "
          f"({', '.join(codecs_names)}), metrics {', '.join(m.name for m in plan.metrics)}")
    print(f"naive : {n_naive} reconstructions in {t_naive:7.2f} s = {n_naive / t_naive:6.2f} images/s")
    print(f"ours  : {n_ours} reconstructions in {t_ours:7.2f} s = {n_ours / t_ours:6.2f} images/s ({failed} failed)")
    print(f"speed-up naive/ours: {t_naive / t_ours:.2f}x   (target >= 3x)")
    print(f"re-run with one added rate point ({first.name}): {t_incr:.2f} s; cold/re-run: "
          f"{t_ours / t_incr:.1f}x   (target >= 20x)")
    print(f"overhead outside codec and network calls (inline run, {t_inline:.2f} s): "
          f"{100 * max(0.0, 1 - inside_inline / t_inline):.1f}%   (target <= 5%)")
    print(f"(pool run: codec+metric seconds summed over rows = {inside:.1f} s for {t_ours:.1f} s wall)")
    print(f"peak RSS of the cold run (main + codec workers): {rss.peak:.0f} MiB; "
          f"process peak over the whole benchmark: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="demo")
    p.add_argument("--limit", type=int, default=3)
    p.add_argument("--codecs", default="jpeg,webp,jpeg2000,avif")
    p.add_argument("--rates", type=int, default=5, help="rate points per codec in the cold run")
    p.add_argument("--metrics", default="psnr,msssim,lpips,fid,miou")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    p.add_argument("--device", default=None)
    ARGS = p.parse_args()
    sys.exit(main())
