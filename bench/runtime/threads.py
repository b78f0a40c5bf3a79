"""The CPU thread budget of a run: busy processes × torch intra-op threads ≤ cores, at every moment.

Oversubscribed cores are slow in a particular way: torch's OpenMP threads wait for each other at
every operator, so one preempted thread stalls the rest (MS-SSIM measured 20× slower on a busy
2-core machine). A run therefore picks its processes and threads from the cores it may use:

* codec worker processes run with 1 thread each (codec libraries and the MS-SSIM kernel are
  single-threaded), their OpenMP/MKL/OpenBLAS variables set before torch or numpy's BLAS can
  start a pool; they also compute the pixel metrics (PSNR, MS-SSIM) of what they decode;
* ``workers`` mode (pixel metrics only): ``workers`` = cores code and measure; the main process
  only loads images and stores rows;
* ``overlap`` mode (metric networks on a GPU): the main process drives the GPU with ``main``
  threads while ``workers`` code, main + workers ≤ cores;
* ``phased`` mode (metric networks on the CPU, which dominate): ``workers`` = cores code one
  image's reconstructions, then the main process measures with all cores while they wait;
* ``inline`` (no pool: few codings, or ``workers`` ≤ 1): everything in the main process, with
  every core for networks, one thread for pixel metrics only (they do not profit from more).

:func:`plan_threads` makes the choice and :meth:`ThreadPlan.as_meta` is recorded with the run.
Other processes' load is not ours to plan, but it is measured: :class:`MainThreads` gives the
main process's networks ``main`` threads less the cores that other programs kept busy during
the previous measuring phase (:class:`CoreLoad`), since one of its threads sharing a core with
someone else's stalls all of them (ESPNetv2 on 2 cores with one busy: 1.3 s at 2 threads,
0.9 s at 1). The thread counts used are recorded as ``meta["threads"]["main_used"]``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from bench.modes import StartMethod

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


CGROUP_ROOT = "/sys/fs/cgroup"


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity (``os.sched_getaffinity``) where the OS
    has it, else ``os.cpu_count()``, and no more than its cgroup's CPU quota
    (:func:`cgroup_cpu_limit`: a container limited to 2 CPUs on a 64-core host gets 2); at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, int(limit))  # 2.5 CPUs of quota: 2 busy threads are not throttled
    return max(1, cores)


def cgroup_cpu_limit(root: str | None = None) -> float | None:
    """CPUs' worth of time this process's cgroup may use per period, or None when unlimited
    or unknown: cgroup v2 ``cpu.max`` ("200000 100000" = 2 CPUs; "max …" = none), else v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota −1 = none); the smallest along the
    process's own cgroup path (``/proc/self/cgroup``) and the namespace root."""
    root = root or CGROUP_ROOT
    folders = [root, os.path.join(root, "cpu"), os.path.join(root, "cpu,cpuacct")]
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                parts = [p for p in path.split("/") if p]
                base = root if controllers == "" else os.path.join(root, controllers)
                folders += [os.path.join(base, *parts[:i]) for i in range(1, len(parts) + 1)]
    except (OSError, ValueError):
        pass
    limits = []
    for folder in dict.fromkeys(folders):
        limits.append(_quota(os.path.join(folder, "cpu.max"), None))
        limits.append(_quota(os.path.join(folder, "cpu.cfs_quota_us"), os.path.join(folder, "cpu.cfs_period_us")))
    found = [v for v in limits if v is not None]
    return min(found) if found else None


def _quota(quota_file: str, period_file: str | None) -> float | None:
    """One quota file as CPUs (v2: "quota period" in one file; v1: two files), None if absent or unlimited."""
    try:
        with open(quota_file) as fh:
            fields = fh.read().split()
        if period_file is not None:
            with open(period_file) as fh:
                fields = fields[:1] + fh.read().split()[:1]
        quota, period = fields[0], fields[1]
        if quota in ("max", "-1") or int(period) <= 0:
            return None
        return int(quota) / int(period)
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class ThreadPlan:
    """Processes and threads of one run. ``workers`` = 0: no pool, everything in the main process.

    ``mode``: "inline" (no pool), "workers" (workers code and measure pixel metrics, the main
    process only coordinates), "overlap" (workers code while the main process measures),
    "phased" (the main process measures only while no worker codes) or "ray" (Ray tasks of one
    CPU each code and measure; the driver only collects rows, ``cores`` = the cluster's CPUs)."""

    cores: int
    main: int                # torch intra-op threads of the main process while it measures
    workers: int             # codec worker processes
    worker_threads: int = 1  # torch/OpenMP threads of each worker
    mode: str = "inline"
    start: StartMethod = ""  # how workers start: "fork" or "spawn" (bench.runtime.procs.start_method); "" without
    gpus_per_task: float = 0.0  # "ray": GPUs a network shard asked Ray for (0: none)

    def peak(self) -> int:
        """The most threads busy at one moment."""
        if self.mode == "overlap":
            return self.main + self.workers * self.worker_threads
        return max(self.main, self.workers * self.worker_threads)  # workers, ray: the main one waits

    @property
    def pixel_metrics_in_workers(self) -> bool:
        return self.mode in ("workers", "overlap", "phased")

    def as_meta(self) -> dict[str, Any]:
        """The plan as recorded in a run's ``meta["threads"]`` (``start`` only with a local pool,
        ``gpus_per_task`` only when Ray shards asked for GPUs)."""
        out = asdict(self)
        for key in ("start", "gpus_per_task"):  # only where they apply
            if not out[key]:
                del out[key]
        return out


def is_network(metric: Any) -> bool:
    """Whether ``metric`` runs a network (a metric without ``pixel = True``: light pixel
    metrics are measured in codec workers, networks in the main process or on a GPU)."""
    return not getattr(metric, "pixel", False)


def heavy_on_cpu(metrics: Sequence[Any]) -> bool:
    """Whether some metric runs a network on the CPU (see :func:`is_network`; its ``device``
    None means CUDA when available)."""
    networks = [m for m in metrics if is_network(m)]
    if not networks:
        return False
    devices = {getattr(m, "device", None) for m in networks}
    if None in devices:
        from bench.runtime.devices import resolve_device

        devices = {resolve_device(d) for d in devices}
    return any(str(d).startswith("cpu") for d in devices)


def has_networks(metrics: Sequence[Any]) -> bool:
    """Whether some metric is a network (:func:`is_network`)."""
    return any(is_network(m) for m in metrics)


def plan_threads(workers: int | None, *, n_parallel: int, heavy: bool, networks: bool | None = None,
                 auto_pool_min: int = 24, cores: int | None = None) -> ThreadPlan:
    """Choose processes and threads for a run.

    ``workers``: the user's request (None: automatic; 0 or 1: no pool); ``n_parallel``: codings
    that may run in workers; ``heavy``: metric networks run on the CPU (see :func:`heavy_on_cpu`);
    ``networks``: some metric is a network (on any device; default: ``heavy``);
    ``auto_pool_min``: codings from which the automatic choice starts a pool (start-up: ~10 ms
    forked, 1–2 s spawned).
    """
    cores = cores or available_cores()
    networks = heavy if networks is None else networks
    if n_parallel == 0 or cores == 1 or (workers is not None and workers <= 1) \
            or (workers is None and n_parallel < auto_pool_min):
        return ThreadPlan(cores, main=cores if heavy else 1, workers=0, mode="inline")
    workers = min(workers or cores, cores)
    if heavy:  # codings, then networks on every core: the networks' share dominates
        return ThreadPlan(cores, main=cores, workers=workers, mode="phased")
    if not networks:  # the workers code and measure; the main process only coordinates
        return ThreadPlan(cores, main=1, workers=workers, mode="workers")
    workers = min(workers, cores - 1)  # one core drives the GPU
    return ThreadPlan(cores, main=cores - workers, workers=workers, mode="overlap")


def limit_process_threads(n: int) -> None:
    """Set this process's thread pools to ``n`` threads: the environment (read by OpenMP, MKL and
    OpenBLAS when they start) and torch's intra-op count if torch is loaded or loadable."""
    for var in THREAD_ENV:
        os.environ[var] = str(n)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


def set_torch_threads(n: int) -> int:
    """Set torch's intra-op thread count to ``n``; returns the previous count (to restore it)."""
    import torch

    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    return old


class CpuTimes(NamedTuple):
    """One reading: busy and total clock ticks of this process's CPUs, and its own CPU ticks."""

    busy: int
    total: int
    own: int
    wall: float


class CoreLoad:
    """How many of this process's cores *other* processes kept busy between two readings.

    From ``/proc/stat`` (busy ticks of the CPUs in this process's affinity) minus this
    process's own CPU time (``/proc/self/stat``, every thread); Linux only (:meth:`open`
    returns None elsewhere). Child processes count as others: read it while they wait."""

    def __init__(self, cpus: Sequence[int], stat: Callable[[], str] | None = None,
                 self_stat: Callable[[], str] | None = None) -> None:
        self.cpus = {f"cpu{c}" for c in cpus}
        self.n = len(self.cpus)
        self._stat = stat or (lambda: _read("/proc/stat"))
        self._self_stat = self_stat or (lambda: _read("/proc/self/stat"))

    @classmethod
    def open(cls) -> CoreLoad | None:
        try:
            probe = cls(sorted(os.sched_getaffinity(0)))
            probe.read()
        except (AttributeError, OSError, ValueError, IndexError):
            return None
        return probe

    def read(self) -> CpuTimes:
        busy = total = 0
        for line in self._stat().splitlines():
            name, *ticks = line.split()
            if name in self.cpus:
                values = [int(v) for v in ticks[:8]]  # user nice system idle iowait irq softirq steal
                idle = values[3] + values[4]
                busy += sum(values) - idle
                total += sum(values)
        fields = self._self_stat().rsplit(")", 1)[1].split()
        return CpuTimes(busy, total, int(fields[11]) + int(fields[12]), time.monotonic())

    def others_busy(self, since: CpuTimes, now: CpuTimes | None = None) -> float | None:
        """Cores' worth of other processes' work since ``since`` (0 … cores); None when too
        little time passed to tell (under 0.2 s, or no tick)."""
        now = now or self.read()
        elapsed = (now.total - since.total) / self.n  # ticks per core
        if elapsed <= 0 or now.wall - since.wall < 0.2:
            return None
        others = (now.busy - since.busy) - (now.own - since.own)
        return min(float(self.n), max(0.0, others / elapsed))


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


class MainThreads:
    """The main process's torch threads for each measuring phase: ``plan.main``, less the
    cores other processes kept busy during the previous phase (at least 1; a core counts once
    others used half of it). ``used``: phases per thread count.

    Adaptive (``adaptive``) only where the main process measures with several threads while
    no worker of its own codes: the "phased" and "inline" modes (in "overlap" its workers would
    count as others), and unless ``BENCH_ADAPTIVE_THREADS=0`` (network outputs depend on the
    thread count at float rounding: ~4e-7 relative for ESPNetv2's logits). ``probe``: the load
    reading (default: :meth:`CoreLoad.open`)."""

    def __init__(self, plan: ThreadPlan, probe: CoreLoad | None = None) -> None:
        self.plan = plan
        self.threads = plan.main
        self.used: Counter[int] = Counter()
        self.adaptive = (plan.mode in ("phased", "inline") and plan.main > 1
                         and os.environ.get("BENCH_ADAPTIVE_THREADS", "1").strip() != "0")
        self.probe = (probe or CoreLoad.open()) if self.adaptive else None

    def as_meta(self) -> dict[str, int]:
        """``{threads: phases}`` of an adaptive plan (what ``meta["threads"]["main_used"]`` holds), else {}."""
        return {str(k): v for k, v in sorted(self.used.items())} if self.adaptive else {}

    @contextmanager
    def phase(self) -> Iterator[int]:
        """Run one measuring phase with the chosen threads (yields their number)."""
        threads = self.threads
        set_torch_threads(threads)
        start = self.probe.read() if self.probe is not None else None
        try:
            yield threads
        finally:
            self.used[threads] += 1
            if start is not None and self.probe is not None:
                others = self.probe.others_busy(start)
                if others is not None:
                    self.threads = max(1, min(self.plan.main, self.plan.cores - int(others + 0.5)))
