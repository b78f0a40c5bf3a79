"""How close a run is to the machine's limit, with and without one busy background core.

The floor of a run is its unavoidable work spread over every core: (Σ codec encode + decode
time + Σ per-reconstruction metric time, each measured on one thread) ÷ cores. It is measured
by running the same work inline on one thread without caches and summing the rows' own
seconds; that run also gives the overhead outside codec and metric calls. Then, each from a
cold store and reference cache, the pipeline as a user runs it (automatic workers and thread
budget, bench.runtime.threads), the same with one core kept busy by a bounded busy-loop process
(always killed), the seeds-style naive loop (benchmarks/pipeline_speed.py: batch 1, originals
recomputed, pytorch-msssim, networks as loaded), and a re-run with one rate point added.

Two scenarios: a classical sweep with pixel metrics only (PSNR, MS-SSIM) and a full-metric run
(+ LPIPS, FID/KID, mIoU; random weights: timing only). First, a side-by-side MS-SSIM
microbenchmark: bench's kernel against pytorch-msssim on one thread at 768×512, interleaved;
then ESPNetv2 with all cores and one fewer, idle and with one core busy.
Ratios come from one process; on a shared machine repeat and compare (``--repeat``).

    python benchmarks/floor.py [--dataset kodak --root ../shared/data/kodak] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TARGETS = {"floor": 1.3, "busy": 2.5, "overhead": 5.0, "incremental": 20.0}


def msssim_micro(repeat: int) -> None:
    """ours vs pytorch-msssim, one thread, one 768×512 photo and a JPEG of it, interleaved."""
    import io

    import numpy as np
    import torch
    from PIL import Image
    from pytorch_msssim import ms_ssim

    from bench.metrics.pixel import msssim_rgb

    kodak = HERE.parent.parent / "shared" / "data" / "kodak" / "kodim01.png"
    if kodak.exists():
        img = Image.open(kodak).convert("RGB")
    else:
        from skimage import data

        img = Image.fromarray(data.astronaut()).resize((768, 512), Image.BICUBIC)
    ref = np.array(img)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=30)
    rec = np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    old = torch.get_num_threads()
    torch.set_num_threads(1)

    def theirs() -> float:
        with torch.no_grad():
            x, y = (torch.tensor(a, dtype=torch.float32).permute(2, 0, 1)[None] for a in (ref, rec))
            return float(ms_ssim(x, y, data_range=255.0))

    t_ours, t_theirs = [], []
    for _ in range(max(3, repeat * 5)):
        for fn, out in ((lambda: msssim_rgb(ref, rec), t_ours), (theirs, t_theirs)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    torch.set_num_threads(old)
    mo, mt = float(np.median(t_ours)), float(np.median(t_theirs))
    print(f"MS-SSIM {ref.shape[1]}x{ref.shape[0]}, 1 thread, median of {len(t_ours)} interleaved: bench "
          f"{1000 * mo:.1f} ms, pytorch-msssim {1000 * mt:.1f} ms: {mt / mo:.2f}x   (target >= 2x); "
          f"min {1000 * min(t_ours):.1f} vs {1000 * min(t_theirs):.1f} ms; "
          f"values {msssim_rgb(ref, rec):.7f} vs {theirs():.7f}")


def threads_under_load() -> None:
    """ESPNetv2 (random weights) on two Kodak-size images with every core vs one thread fewer,
    idle and with one core busy: why bench.runtime.threads.MainThreads adapts to other programs."""
    import numpy as np
    import torch

    from bench.runtime import threads
    from bench.segmenters import make_segmenter

    cores = threads.available_cores()
    if cores < 2:
        return
    seg = make_segmenter("espnetv2", allow_random_weights=True, device="cpu")
    images = [np.random.default_rng(i).integers(0, 256, (512, 768, 3), dtype=np.uint8) for i in range(2)]
    seg.predict_batch(images)
    old = torch.get_num_threads()

    def median(n: int) -> float:
        torch.set_num_threads(n)
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            seg.predict_batch(images)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    idle = {n: median(n) for n in (cores, cores - 1)}
    with BusyCore(120):
        time.sleep(0.3)
        busy = {n: median(n) for n in (cores, cores - 1)}
    torch.set_num_threads(old)
    print(f"ESPNetv2, 2 images, median of 4: idle {idle[cores]:.2f} s at {cores} threads, {idle[cores - 1]:.2f} s at "
          f"{cores - 1}; one core busy: {busy[cores]:.2f} s at {cores} threads, {busy[cores - 1]:.2f} s at {cores - 1} "
          f"(bench.runtime.threads.MainThreads drops to {cores - 1} while the core is busy)")


class BusyCore:
    """One core kept busy by a pure-Python loop in a child process for at most ``seconds``; killed
    on exit, and it stops by itself when this process is gone (its parent changes)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> BusyCore:
        code = (f"import os, time\nend = time.time() + {self.seconds}\nparent = {os.getpid()}\n"
                "while time.time() < end and os.getppid() == parent:\n    pass\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def pool_startup(codecs, metrics, cores: int) -> float:
    """Seconds to spawn ``cores`` codec workers as a run does (imports, codecs, pixel metrics)."""
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    from bench.execution.local import _init_worker
    from bench.runtime.procs import start_method, worker_context
    from bench.runtime.threads import is_network

    pixel = [m for m in metrics if not is_network(m)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(cores, mp_context=worker_context(start_method()), initializer=_init_worker,
                             initargs=(1, pickle.dumps((list(codecs), pixel)), os.getpid())) as pool:
        list(pool.map(time.sleep, [0.2] * cores))
    return time.perf_counter() - t0 - 0.2


def timed_run(config, work: Path, tag: str) -> tuple[float, list, dict]:
    """One run from a cold store and reference cache: wall seconds, rows, thread plan."""
    from bench.execution.runner import execute
    from bench.storage.store import Store

    os.environ["BENCH_CACHE_DIR"] = str(work / f"refcache-{tag}")
    with Store(work / f"{tag}.sqlite") as store:
        t0 = time.perf_counter()
        run_id = execute(config, store, progress=False)
        wall = time.perf_counter() - t0
        rows = list(store.rows(run_id))
        meta = store.run(run_id)["meta"]
    return wall, rows, meta.get("threads") or {}


def scenario(name: str, metrics: list[str]) -> None:
    import copy

    import pipeline_speed

    from bench.execution.runner import RunConfig, make_plan
    from bench.runtime import threads

    opts = {"allow_random_weights": True, "device": ARGS.device}
    limit = ARGS.limit if name == "classical" else ARGS.full_limit
    n_rates = ARGS.rates if name == "classical" else ARGS.full_rates
    params = {"root": ARGS.root} if ARGS.root else {}
    sweep = [v for v in ARGS.sweep.split(",") if v] if name == "classical" else []
    config = RunConfig(ARGS.dataset, ARGS.codecs.split(","), metrics, limit=limit, metric_options=opts,
                       dataset_params=params, rates={"*": sweep} if sweep else {})
    plan = make_plan(config)
    rates = {c.name: plan.rates[c.name][:n_rates] for c in plan.codecs}
    first = plan.codecs[0]
    rates[first.name] = rates[first.name][:-1]  # one held out for the re-run
    config.rates = {c.name: [c.rate_label(r) for r in rates[c.name]] for c in plan.codecs}
    n = len(plan.ids) * sum(len(v) for v in rates.values())
    cores = threads.available_cores()
    work = Path(tempfile.mkdtemp(prefix=f"bench-floor-{name}-"))
    print(f"\n== {name}: {len(plan.ids)} images x {sum(len(v) for v in rates.values())} codec-rate points "
          f"= {n} reconstructions ({ARGS.codecs}); metrics {', '.join(metrics)}; {cores} cores; "
          f"device {ARGS.device or 'auto'}")
    warm = copy.deepcopy(config)
    warm.limit = 1
    timed_run(warm, work, "warmup")  # imports, network construction, file caches

    # the floor: the same work inline on one thread, no caches; the rows' own seconds
    inline = copy.deepcopy(config)
    inline.workers, inline.use_cache = 1, False
    real_cores = threads.available_cores
    threads.available_cores = lambda: 1
    try:
        t_inline, rows, _ = timed_run(inline, work, "inline")
    finally:
        threads.available_cores = real_cores
    inside = sum(sum(r.seconds.values()) for r in rows)
    floor = inside / cores
    print(f"floor: {inside:.2f} s of codec + metric work on one thread / {cores} cores = {floor:.2f} s "
          f"({1000 * inside / n:.0f} ms per reconstruction); overhead outside codec and metric calls "
          f"(inline, one thread): {100 * max(0.0, 1 - inside / t_inline):.1f}%   "
          f"(target <= {TARGETS['overhead']:.0f}%)")

    startup = pool_startup(plan.codecs, plan.metrics, cores)
    from bench.runtime.procs import start_method

    print(f"start-up of {cores} codec workers ({start_method()}): {startup:.2f} s, paid once per run "
          f"(the floor ratio without it is printed too)")
    walls, busy_walls = [], []
    for i in range(ARGS.repeat):
        wall, rows, plan_meta = timed_run(copy.deepcopy(config), work, f"ours{i}")
        failed = sum(r.status != "ok" for r in rows)
        walls.append(wall)
        print(f"ours: {wall:.2f} s = {wall / floor:.2f}x the floor   (target <= {TARGETS['floor']}x); without the "
              f"workers' start-up {(wall - startup) / floor:.2f}x; threads {plan_meta}; {failed} failed")
        if ARGS.busy:
            with BusyCore(ARGS.busy_seconds):
                busy, _, busy_meta = timed_run(copy.deepcopy(config), work, f"busy{i}")
            busy_walls.append(busy)
            print(f"ours with one busy core: {busy:.2f} s = {busy / floor:.2f}x the floor, {busy / wall:.2f}x "
                  f"slower than without   (target <= {TARGETS['busy']}x; {cores / max(1, cores - 1):.1f}x ideal); "
                  f"main threads per measuring phase {busy_meta.get('main_used') or busy_meta.get('main')}")

    # the seeds-style naive loop, then the incremental re-run on the first cold run's store
    nets = pipeline_speed.seeds_networks(plan.metrics)
    if "miou" in nets:
        nets["miou"].predict(plan.dataset.get(plan.ids[0]).image)  # its own load, outside the timing
    from bench.metrics.base import Pair

    sample = plan.dataset.get(plan.ids[0])
    for m in plan.metrics:  # networks loaded outside the timing, as on our side's warm-up
        m.update(m.init(), Pair(sample, sample.image.copy(), 0))
    _n, t_naive = pipeline_speed.naive(plan.dataset, plan.codecs, rates, plan.metrics, nets, limit)
    best = min(walls)
    print(f"naive loop: {t_naive:.2f} s = {t_naive / floor:.2f}x the floor; naive/ours: {t_naive / best:.2f}x")

    more = copy.deepcopy(config)
    extra = [first.rate_label(r) for r in plan.rates[first.name][:n_rates]
             if first.rate_label(r) not in config.rates[first.name]]
    if extra:
        more.rates[first.name] = config.rates[first.name] + extra[:1]
        os.environ["BENCH_CACHE_DIR"] = str(work / "refcache-ours0")
        from bench.execution.runner import execute
        from bench.storage.store import Store

        with Store(work / "ours0.sqlite") as store:
            t0 = time.perf_counter()
            execute(more, store, progress=False)
            t_incr = time.perf_counter() - t0
        points = sum(len(v) for v in rates.values())
        added_floor = inside / n * len(plan.ids) / cores  # the new reconstructions' share of the floor
        print(f"re-run with one added rate point ({first.name} {extra[0]}): {t_incr:.2f} s; cold/re-run "
              f"{walls[0] / t_incr:.1f}x   (target >= {TARGETS['incremental']:.0f}x; at most {points}x here: "
              f"{points} codec-rate points cold, 1 added); {t_incr / added_floor:.2f}x the floor of its "
              f"{len(plan.ids)} new reconstructions (~{added_floor:.2f} s)")
    print(f"summary {name}: floor {floor:.2f} s, ours {best / floor:.2f}x floor (best of {len(walls)}), "
          + (f"busy-core slowdown {min(busy_walls) / best:.2f}x, " if busy_walls else "")
          + f"naive/ours {t_naive / best:.2f}x")


def main() -> int:
    import signal

    from bench.errors import BenchError
    from bench.runtime.devices import resolve_device

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout's TERM still kills the busy loop
    try:
        resolve_device(ARGS.device)
        if ARGS.micro:
            msssim_micro(ARGS.repeat)
            threads_under_load()
        for name in filter(None, ARGS.scenarios.split(",")):
            metrics = ["psnr", "msssim"] if name == "classical" else ["psnr", "msssim", "lpips", "fid", "miou"]
            scenario(name, metrics)
    except BenchError as err:
        print(f"floor.py: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    kodak = HERE.parent.parent / "shared" / "data" / "kodak"
    p.add_argument("--dataset", default="kodak" if kodak.is_dir() else "demo")
    p.add_argument("--root", default=str(kodak) if kodak.is_dir() else None, help="dataset root (kodak: folder)")
    p.add_argument("--codecs", default="jpeg,webp")
    p.add_argument("--limit", type=int, default=24, help="images of the classical sweep")
    p.add_argument("--sweep", default=",".join(str(q) for q in range(5, 100, 5)),
                   help="rate values of the classical sweep, every codec (default: qualities 5..95, 19 points; "
                        "'': the cards' rates)")
    p.add_argument("--rates", type=int, default=19, help="rate points per codec of the classical sweep (the first N)")
    p.add_argument("--full-limit", type=int, default=4, help="images of the full-metric run")
    p.add_argument("--full-rates", type=int, default=7, help="rate points per codec of the full-metric run")
    p.add_argument("--scenarios", default="classical,full")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per scenario (noisy machines: 3)")
    p.add_argument("--busy", action=argparse.BooleanOptionalAction, default=True, help="also with one busy core")
    p.add_argument("--busy-seconds", type=float, default=900, help="upper bound of the busy loop's life")
    p.add_argument("--micro", action=argparse.BooleanOptionalAction, default=True,
                   help="MS-SSIM side by side, and network threads under a busy core")
    p.add_argument("--device", default=None, help="metric networks' device (cpu, cuda; default: CUDA if any)")
    ARGS = p.parse_args()
    sys.exit(main())
