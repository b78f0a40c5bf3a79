"""Full pipeline vs a naive seeds-style loop, measured in one run on one machine.

Naive baseline (how the seeds' evaluation scripts work): for every codec, rate point and
image, in that order: load the image, encode, decode, and compute every metric with
batch size 1 — the originals' Inception features and segmentation recomputed each time —
with the networks as the seeds run them (the lpips package's forward, torch-fidelity's
Inception, the segmenter as loaded). The naive loop is fed our preprocessing, whose
channels_last-strided tensors already make the segmenter ~1.3× faster than the seeds'
contiguous ones on CPU, so the printed speed-up is conservative. Ours: ``bench.execution.runner.execute`` (reference cache,
batched metrics, an original's LPIPS features shared by its reconstructions, codec worker
pool (pixel metrics in the workers, networks on every core between codings), the segmenter's
BN folded and channels_last on CPU).
With ``--attribute`` (default) the naive loop also runs with our networks, which splits
the speed-up into network tuning and pipeline. Then the incremental case: the same run
with one rate point added to one codec, against the cold run.

Metric networks use random weights (timing only: the architectures are the real ones).
Prints images/s, naive/ours, cold/incremental, peak RSS and the share of wall time spent
outside codec and network calls.

    python benchmarks/pipeline_speed.py [--dataset demo] [--limit 3] [--codecs jpeg,webp,...] [--rates 7]
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

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def seeds_networks(metrics) -> dict:
    """The metric networks as the seeds' scripts run them: the lpips package's own forward,
    torch-fidelity's Inception, the segmenter exactly as loaded (NCHW, BatchNorm unfolded,
    batch 1). Same weights as ours; only our inference tuning is left out."""
    import copy

    import torch

    by_name = {m.name: m for m in metrics}
    out = {}
    if "lpips" in by_name:
        out["lpips"] = copy.deepcopy(by_name["lpips"].model()).to(memory_format=torch.contiguous_format)
    if "fid" in by_name:
        out["fid"] = by_name["fid"].extractor()
    if "miou" in by_name:
        seg = copy.copy(by_name["miou"].segmenter)
        if hasattr(seg, "optimize"):
            seg._net, seg.optimize, seg.batch_size = None, False, 1
        out["miou"] = seg
    return out


def naive(dataset, codecs, rates, metrics, nets: dict | None, limit: int | None) -> tuple[int, float]:
    """The seeds' way: per image, batch 1, originals' features recomputed every time, with
    ``nets`` from :func:`seeds_networks` and pytorch-msssim; None: our tuned networks and MS-SSIM
    kernel (to split the speed-up). ``limit``: the first images of the dataset."""
    import torch
    from pytorch_msssim import ms_ssim

    from bench.metrics.fidelity import inception_features
    from bench.metrics.lpips_metric import to_lpips_input
    from bench.metrics.pixel import mse_uint8, msssim_rgb, psnr_from_mse

    by_name = {m.name: m for m in metrics}
    tuned = nets is None
    n = 0
    t0 = time.perf_counter()
    for codec in codecs:
        for rate in rates[codec.name]:
            for image_id in dataset.ids()[:limit]:
                sample = dataset.get(image_id)
                ref = sample.image
                rec = codec.decode(codec.encode(ref, rate).parts)
                psnr_from_mse(mse_uint8(ref, rec))
                if tuned:
                    msssim_rgb(ref, rec)
                else:
                    with torch.no_grad():
                        ms_ssim(*(torch.tensor(a, dtype=torch.float32).permute(2, 0, 1)[None] for a in (ref, rec)),
                                data_range=255.0)
                if "lpips" in by_name:
                    if tuned:
                        by_name["lpips"].distances([ref], [rec])
                    else:
                        with torch.no_grad():
                            nets["lpips"](to_lpips_input([ref]), to_lpips_input([rec]))
                if "fid" in by_name:  # features of the original recomputed for every codec × rate
                    inception_features(by_name["fid"].extractor(), [ref], 1)
                    inception_features(by_name["fid"].extractor(), [rec], 1)
                if "miou" in by_name:
                    seg = by_name["miou"].segmenter if tuned else nets["miou"]
                    seg.predict(ref)
                    seg.predict(rec)
                n += 1
    return n, time.perf_counter() - t0


def main() -> int:
    import torch

    from bench.execution.runner import RunConfig, execute, make_plan
    from bench.storage.store import Store

    if ARGS.threads:
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
    labels = {c.name: [c.rate_label(r) for r in rates[c.name]] for c in plan.codecs}
    config.rates = labels
    # warm up: load every network once (both sides pay model loading outside the timing)
    sample = plan.dataset.get(plan.ids[0])
    for m in plan.metrics:
        from bench.metrics.base import Pair

        m.update(m.init(), Pair(sample, sample.image.copy(), 0))

    nets = seeds_networks(plan.metrics)
    if "miou" in nets:
        nets["miou"].predict(sample.image)  # its own load, outside the timing
    n_naive, t_naive = naive(plan.dataset, plan.codecs, rates, plan.metrics, nets, ARGS.limit)
    t_tuned = naive(plan.dataset, plan.codecs, rates, plan.metrics, None, ARGS.limit)[1] if ARGS.attribute else None

    with Store(work / "bench.sqlite") as store, RssSampler() as rss:
        t0 = time.perf_counter()
        run_id = execute(config, store, progress=False)
        t_ours = time.perf_counter() - t0
        rows = list(store.rows(run_id))
        n_ours = len(rows)
        inside = sum(sum(r.seconds.values()) for r in rows)
        failed = sum(r.status != "ok" for r in rows)

        # one more rate point (for the first codec: the next default point not yet used)
        more = {name: list(values) for name, values in labels.items()}
        more[first.name] += [first.rate_label(r) for r in plan.rates[first.name] if r not in rates[first.name]][:1]
        config.rates = more
        t0 = time.perf_counter()
        incr_id = execute(config, store, progress=False)
        t_incr = time.perf_counter() - t0
        added = more[first.name][-1]
        new_rows = [r for r in store.rows(incr_id) if r.codec == first.name and r.rate == added]
        t_new = sum(sum(r.seconds.values()) for r in new_rows)

    # overhead share measured inline (workers=1), where codec and network time add up to wall time
    with Store(work / "inline.sqlite") as store:
        config.rates = labels
        config.workers, config.use_cache = 1, False
        t0 = time.perf_counter()
        inline_id = execute(config, store, progress=False)
        t_inline = time.perf_counter() - t0
        inside_inline = sum(sum(r.seconds.values()) for r in store.rows(inline_id))

    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, device {ARGS.device or 'auto'}")
    print(f"work: {len(plan.ids)} images x {sum(len(v) for v in rates.values())} codec-rate points "
          f"({', '.join(codecs_names)}), metrics {', '.join(m.name for m in plan.metrics)}")
    print(f"naive : {n_naive} reconstructions in {t_naive:7.2f} s = {n_naive / t_naive:6.2f} images/s")
    print(f"ours  : {n_ours} reconstructions in {t_ours:7.2f} s = {n_ours / t_ours:6.2f} images/s ({failed} failed)")
    print(f"speed-up naive/ours: {t_naive / t_ours:.2f}x   (target >= 3x)")
    if t_tuned is not None:
        print(f"  of which network tuning (BN folding, channels_last, CPU batch choice): naive loop with our "
              f"networks {t_tuned:.2f} s = {t_naive / t_tuned:.2f}x; pipeline (reference cache, batching, "
              f"overlap) on top: {t_tuned / t_ours:.2f}x")
    print(f"re-run with one added rate point ({first.name}): {t_incr:.2f} s; cold/re-run: "
          f"{t_ours / t_incr:.1f}x   (target >= 20x)")
    print(f"  the {len(new_rows)} new rows' own codec + metric time: {t_new:.2f} s (cold/that: {t_ours / t_new:.1f}x); "
          f"the rest is start-up (networks loaded, plan, store)")
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
    p.add_argument("--codecs", default="jpeg,webp,jpeg2000,avif,jpegxl,heic",
                   help="default: the classical codecs that install from PyPI (what --codecs all runs here)")
    p.add_argument("--rates", type=int, default=7, help="rate points per codec in the cold run (7: every card's "
                   "points; the first codec holds one out for the re-run)")
    p.add_argument("--metrics", default="psnr,msssim,lpips,fid,miou")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    p.add_argument("--attribute", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the naive loop with our tuned networks, to split the speed-up")
    p.add_argument("--device", default=None)
    ARGS = p.parse_args()
    sys.exit(main())
