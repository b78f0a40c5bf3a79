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
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity (``os.sched_getaffinity``) where the OS
    has it, else ``os.cpu_count()``; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


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
    start: str = ""          # how workers start: "fork" or "spawn" (bench.procs.start_method); "" without

    def peak(self) -> int:
        """The most threads busy at one moment."""
        if self.mode == "overlap":
            return self.main + self.workers * self.worker_threads
        return max(self.main, self.workers * self.worker_threads)  # workers, ray: the main one waits

    @property
    def pixel_metrics_in_workers(self) -> bool:
        return self.mode in ("workers", "overlap", "phased")

    def as_meta(self) -> dict[str, Any]:
        """The plan as recorded in a run's ``meta["threads"]`` (``start`` only with a local pool)."""
        out = asdict(self)
        if not out["start"]:
            del out["start"]
        return out


def heavy_on_cpu(metrics: Sequence[Any]) -> bool:
    """Whether some metric runs a network on the CPU (a metric without ``pixel = True`` is a
    network; its ``device`` None means CUDA when available)."""
    networks = [m for m in metrics if not getattr(m, "pixel", False)]
    if not networks:
        return False
    devices = {getattr(m, "device", None) for m in networks}
    if None in devices:
        from .devices import resolve_device

        devices = {resolve_device(d) for d in devices}
    return any(str(d).startswith("cpu") for d in devices)


def has_networks(metrics: Sequence[Any]) -> bool:
    """Whether some metric is a network (any metric without ``pixel = True``)."""
    return any(not getattr(m, "pixel", False) for m in metrics)


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
