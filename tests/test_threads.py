"""The thread budget: processes × torch threads never exceed the cores, read back from a real run."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fakes_bench import QuantCodec

from bench.datasets.base import Dataset, Sample
from bench.errors import ConfigError
from bench.execution.local import AUTO_POOL_MIN, LocalExecutor
from bench.metrics.base import Metric, Pair, State
from bench.runtime import threads
from bench.runtime.threads import ThreadPlan, available_cores, heavy_on_cpu, plan_threads


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 8, 16, 64])
def test_plans_never_exceed_the_cores(cores):
    for workers in (None, 0, 1, 2, 3, cores, 2 * cores + 1):
        for n_parallel in (0, 5, AUTO_POOL_MIN, 1000):
            for heavy, networks in ((False, False), (False, True), (True, True)):
                plan = plan_threads(workers, n_parallel=n_parallel, heavy=heavy, networks=networks, cores=cores)
                where = (cores, workers, n_parallel, heavy, networks, plan)
                assert plan.cores == cores and plan.main >= 1 and plan.worker_threads == 1, where
                assert plan.peak() <= cores, where
                assert plan.workers <= cores, where
                if plan.workers == 0:
                    assert plan.mode == "inline" and plan.main == (cores if heavy else 1), where
                    continue
                assert n_parallel and cores > 1, where
                if heavy:  # the networks then get every core, while no worker codes
                    assert plan.mode == "phased" and plan.main == cores, where
                elif networks:  # on a GPU, driven by the main process beside the workers
                    assert plan.mode == "overlap" and plan.main + plan.workers == cores, where
                else:  # pixel metrics only: the workers code and measure, the main process waits
                    assert plan.mode == "workers" and plan.workers == min(workers or cores, cores), where
    # automatic: a pool only when there is enough to code; on 2 cores one worker beside the main process
    assert plan_threads(None, n_parallel=AUTO_POOL_MIN - 1, heavy=False, cores=8).workers == 0
    assert plan_threads(None, n_parallel=AUTO_POOL_MIN, heavy=False, cores=2) == \
        ThreadPlan(2, main=1, workers=2, mode="workers")
    assert plan_threads(None, n_parallel=AUTO_POOL_MIN, heavy=False, networks=True, cores=2) == \
        ThreadPlan(2, main=1, workers=1, mode="overlap")
    assert plan_threads(None, n_parallel=100, heavy=True, cores=2) == ThreadPlan(2, main=2, workers=2, mode="phased")


def test_available_cores_reads_the_affinity_then_cpu_count(monkeypatch):
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda root=None: None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5, 7}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert available_cores() == 3  # a process pinned to 3 of 64 cores (taskset, cgroup cpuset)
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert available_cores() == 64
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert available_cores() == 1


def test_a_cgroup_cpu_quota_caps_the_cores(monkeypatch, tmp_path):
    """A container limited to 1.5 CPUs on a 64-core host: 1 busy thread, not 64 throttled ones."""
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(str(v2)) == pytest.approx(1.5)
    monkeypatch.setattr(threads, "CGROUP_ROOT", str(v2))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert available_cores() == 1
    (v2 / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(str(v2)) is None and available_cores() == 64
    v1 = tmp_path / "v1" / "cpu,cpuacct"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_limit(str(tmp_path / "v1")) == pytest.approx(4.0)
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_limit(str(tmp_path / "v1")) is None
    assert threads.cgroup_cpu_limit(str(tmp_path / "nothing")) is None


def test_pixel_metrics_are_light_networks_heavy_on_cpu():
    from bench.metrics.pixel import MSSSIM, PSNR

    assert not heavy_on_cpu([PSNR(), MSSSIM()])
    net = Metric.__new__(_Probe)
    net.device = "cpu"
    assert heavy_on_cpu([PSNR(), net])
    net.device = "cuda:0"
    assert not heavy_on_cpu([PSNR(), net])


# -- a real run: what the workers and the main process actually used -------------------------------

class _Images(Dataset):
    name = "probe-images"

    def __init__(self, n: int) -> None:
        self.n = n

    def ids(self) -> list[str]:
        return [f"im{i}" for i in range(self.n)]

    def files(self, image_id: str) -> list[Path]:
        return []

    def load(self, image_id: str) -> Sample:
        rng = np.random.default_rng(int(image_id[2:]))
        return Sample(image_id, rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))


class ThreadProbeCodec(QuantCodec):
    """QuantCodec that notes its process, torch threads, OMP setting and busy interval."""

    name = "threadprobe"

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Any = None):
        t0 = time.time()
        enc = super().encode(image, rate)
        time.sleep(0.01)  # long enough for intervals to be seen
        enc.notes = {"pid": float(os.getpid()), "torch_threads": float(torch.get_num_threads()),
                     "omp": os.environ.get("OMP_NUM_THREADS", ""), "t0": t0, "t1": time.time()}
        return enc


class _Probe(Metric):
    """Records where it measured (process, torch threads) and when (in the main process)."""

    name = "probe"

    def __init__(self, pixel: bool) -> None:
        super().__init__(device="cpu")
        self.pixel = pixel
        self.intervals: list[tuple[float, float]] = []

    def init(self) -> State:
        return {"n": np.zeros(())}

    def update(self, state: State, pair: Pair) -> dict[str, float]:
        t0 = time.time()
        time.sleep(0.005)
        self.intervals.append((t0, time.time()))
        return {"measure_threads": float(torch.get_num_threads()), "measure_pid": float(os.getpid())}

    def compute(self, state: State) -> dict[str, float]:
        return {}


@pytest.mark.parametrize("pixel", [True, False], ids=["pixel-metrics", "network-metrics"])
def test_run_uses_at_most_the_cores(monkeypatch, pixel):
    cores = 3
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    before = torch.get_num_threads()
    dataset, probe = _Images(8), _Probe(pixel)
    todo = [(i, [(0, 32), (0, 16), (0, 8)]) for i in dataset.ids()]  # 24 codings: an automatic pool
    executor = LocalExecutor(workers=None)
    rows = list(executor.run(dataset, [ThreadProbeCodec()], [probe], todo))
    plan = executor.thread_plan
    assert len(rows) == 24 and all(r.status == "ok" for r in rows), [r.error for r in rows]
    assert torch.get_num_threads() == before  # restored after the run

    worker_pids = {r.metrics["pid"] for r in rows}
    assert os.getpid() not in worker_pids and 1 <= len(worker_pids) <= plan.workers  # coded in the pool
    assert {r.metrics["torch_threads"] for r in rows} == {1.0}  # what each worker really ran with
    assert {r.notes["omp"] for r in rows} == {"1"}
    measured_in = {r.metrics["measure_pid"] for r in rows}
    measure_threads = {r.metrics["measure_threads"] for r in rows}
    if pixel:  # the workers code and measure; the main process only waits for them
        assert plan.mode == "workers" and plan.workers == cores and plan.main == 1
        assert measured_in <= worker_pids and measure_threads == {1.0}
        assert len(worker_pids) * 1 <= cores
    else:  # the main process gets every core, but only while no worker codes
        assert plan.mode == "phased" and plan.main == cores
        assert measured_in == {float(os.getpid())} and measure_threads == {float(cores)}
        codings = [(r.metrics["t0"], r.metrics["t1"]) for r in rows]
        overlaps = [(c, m) for c in codings for m in probe.intervals if c[0] < m[1] and m[0] < c[1]]
        assert not overlaps


def test_run_meta_records_the_threads(tmp_path, monkeypatch):
    import fakes_bench

    from bench.execution.runner import RunConfig, execute
    from bench.storage.store import Store

    fakes_bench.use_fakes(tmp_path, monkeypatch, 2)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    with Store(tmp_path / "bench.sqlite") as store:
        run_id = execute(RunConfig("pngs", ["quant"], ["psnr"], workers=2), store, progress=False)
        recorded = store.run(run_id)["meta"]["threads"]
    assert recorded == {"cores": 2, "main": 1, "workers": 2, "worker_threads": 1, "mode": "workers",
                        "start": "fork"}


def test_workers_fork_on_linux_without_cuda_else_spawn(monkeypatch):
    from bench.runtime import procs

    monkeypatch.delenv("BENCH_START_METHOD", raising=False)
    monkeypatch.setattr(procs.sys, "platform", "linux")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert procs.start_method() == "fork"
    assert procs.worker_context().get_start_method() == "fork"
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # a forked child could not use it
    assert procs.start_method() == "spawn"
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(procs.sys, "platform", "darwin")
    assert procs.start_method() == "spawn"
    monkeypatch.setenv("BENCH_START_METHOD", "fork")
    assert procs.start_method() == "fork"
    monkeypatch.setenv("BENCH_START_METHOD", "spawn")
    monkeypatch.setattr(procs.sys, "platform", "linux")
    assert procs.start_method() == "spawn" and procs.worker_context().get_start_method() == "spawn"
    monkeypatch.setenv("BENCH_START_METHOD", "forkserver")
    with pytest.raises(ConfigError, match="not a start method"):
        procs.start_method()


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_pool_starts_at_the_first_uncached_coding_only(monkeypatch, tmp_path, start):
    """A re-run whose codings are all cached starts no worker; one with a new rate point starts
    them and codes only that point there (with either start method)."""
    from concurrent.futures import ProcessPoolExecutor

    from bench.execution import guard
    from bench.execution.resultcache import ResultCache

    monkeypatch.setenv("BENCH_START_METHOD", start)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    started = []

    class Counting(ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            started.append(kwargs["mp_context"].get_start_method())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(guard, "ProcessPoolExecutor", Counting)  # the pool of bench.execution.guard.CodingPool
    dataset = _Images(8)
    rates = [32, 16, 8]
    import sqlite3

    cache = ResultCache(sqlite3.connect(tmp_path / "cache.sqlite"))
    todo = [(i, [(0, r) for r in rates]) for i in dataset.ids()]
    first = list(LocalExecutor(workers=None, cache=cache).run(dataset, [ThreadProbeCodec()], [], todo))
    assert started == [start] and len(first) == 24
    again = LocalExecutor(workers=None, cache=cache)
    rows = list(again.run(dataset, [ThreadProbeCodec()], [], todo))
    assert started == [start] and again.thread_plan.workers == 2  # planned, never started
    assert [r.metrics["pid"] for r in rows] == [r.metrics["pid"] for r in first]  # the cached codings
    todo = [(i, [(0, r) for r in [*rates, 4]]) for i in dataset.ids()]
    rows = list(LocalExecutor(workers=None, cache=cache).run(dataset, [ThreadProbeCodec()], [], todo))
    assert started == [start, start] and len(rows) == 32
    new = {r.metrics["pid"] for r in rows if r.rate == "4"}
    assert new and os.getpid() not in new and not new & {r.metrics["pid"] for r in first}


def test_pixel_metrics_measured_in_workers_equal_inline_and_keep_errors(monkeypatch):
    """PSNR and MS-SSIM measured in the codec workers give the main process's values; a metric
    failing there (MS-SSIM on a 48×40 image) is recorded for that image as in the main process."""
    from bench.metrics.pixel import MSSSIM, PSNR

    monkeypatch.setattr(threads, "available_cores", lambda: 2)

    class Mixed(_Images):
        def load(self, image_id: str) -> Sample:
            size = (48, 40) if image_id == "im0" else (170, 180)
            rng = np.random.default_rng(int(image_id[2:]))
            return Sample(image_id, rng.integers(0, 256, (*size, 3), dtype=np.uint8))

    dataset = Mixed(8)
    todo = [(i, [(0, 32), (0, 16), (0, 8)]) for i in dataset.ids()]
    pooled = LocalExecutor(workers=None)
    rows = {(r.image_id, r.rate): r for r in pooled.run(dataset, [QuantCodec()], [PSNR(), MSSSIM()], todo)}
    assert pooled.thread_plan.mode == "workers"
    inline = {(r.image_id, r.rate): r for r in LocalExecutor(workers=1).run(dataset, [QuantCodec()],
                                                                            [PSNR(), MSSSIM()], todo)}
    assert rows.keys() == inline.keys() and len(rows) == 24
    for key, row in rows.items():
        assert row.status == inline[key].status and row.error == inline[key].error
        assert row.metric_errors == inline[key].metric_errors
        assert row.metrics == inline[key].metrics
        assert set(row.states) == set(inline[key].states)
    small = rows[("im0", "32")]
    # a metric's failure is that metric's: the row stays ok with its PSNR
    assert small.status == "ok" and "MS-SSIM needs both sides >= 161" in small.metric_errors["msssim"]
    assert "psnr" in small.metrics and "msssim" not in small.metrics


# -- other programs' load: the main process's network threads adapt ----------------------------

def _stat(ticks: dict[int, tuple[int, int]]) -> str:
    """/proc/stat text with (busy, idle) ticks per CPU (busy as user time)."""
    total = (sum(b for b, _ in ticks.values()), sum(i for _, i in ticks.values()))
    lines = [f"cpu  {total[0]} 0 0 {total[1]} 0 0 0 0 0 0"]
    lines += [f"cpu{c} {b} 0 0 {i} 0 0 0 0 0 0" for c, (b, i) in sorted(ticks.items())]
    return "\n".join(lines + ["intr 1 2 3", "ctxt 5"]) + "\n"


def _self_stat(own: int) -> str:  # utime = own, stime = 0 (fields 14 and 15)
    return "4242 (python (x)) R " + " ".join(["0"] * 10) + f" {own} 0 " + " ".join(["0"] * 30) + "\n"


def test_core_load_counts_busy_ticks_of_our_cpus_less_our_own(monkeypatch):
    from bench.runtime.threads import CoreLoad, CpuTimes

    readings = {"stat": _stat({0: (100, 900), 1: (50, 950), 2: (0, 1000)}), "self": _self_stat(40)}
    probe = CoreLoad([0, 1], stat=lambda: readings["stat"], self_stat=lambda: readings["self"])
    start = probe.read()
    assert start.busy == 150 and start.total == 2000 and start.own == 40
    # 100 ticks per core pass; our CPUs did 150 busy ticks, 60 of them ours; CPU 2 is not ours
    readings.update(stat=_stat({0: (200, 900), 1: (100, 1000), 2: (100, 1000)}), self=_self_stat(100))
    later = probe.read()._replace(wall=start.wall + 1.0)
    assert probe.others_busy(start, later) == pytest.approx((150 - 60) / 100)
    assert probe.others_busy(start, later._replace(wall=start.wall + 0.05)) is None  # too short to tell
    assert probe.others_busy(start, CpuTimes(start.busy, start.total, start.own, start.wall + 1)) is None


def test_main_threads_drop_a_core_while_others_use_it_and_come_back(monkeypatch):
    from bench.runtime.threads import MainThreads

    loads = iter([0.7, 1.0, 0.3, None, 1.9])

    class Probe:
        def read(self):
            return time.monotonic()

        def others_busy(self, since):
            return next(loads)

    plan = ThreadPlan(cores=2, main=2, workers=2, mode="phased")
    chosen = []
    main = MainThreads(plan, Probe())
    for _ in range(5):
        with main.phase() as n:
            chosen.append((n, torch.get_num_threads()))
    assert chosen == [(2, 2), (1, 1), (1, 1), (2, 2), (2, 2)]  # None (too short): keep; then 1.9 busy
    assert main.threads == 1 and main.as_meta() == {"1": 2, "2": 3}
    assert MainThreads(ThreadPlan(cores=2, main=1, workers=2, mode="workers")).as_meta() == {}
    overlap = MainThreads(ThreadPlan(cores=4, main=2, workers=2, mode="overlap"), Probe())
    assert not overlap.adaptive and overlap.probe is None  # its own workers would count as others
    monkeypatch.setenv("BENCH_ADAPTIVE_THREADS", "0")  # fixed threads: bit-for-bit the same on a busy machine
    fixed = MainThreads(plan, Probe())
    assert not fixed.adaptive and fixed.probe is None


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs /proc (Linux)")
def test_core_load_sees_a_spinning_process():
    import subprocess
    import sys

    from bench.runtime.threads import CoreLoad

    probe = CoreLoad.open()
    assert probe is not None
    spin = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)  # past its start-up
        start = probe.read()
        time.sleep(1.0)
        others = probe.others_busy(start)
    finally:
        spin.kill()
        spin.wait()
    assert others is not None and others >= 0.6  # the spinner's core (more if the machine is busy too)


def test_phased_run_measures_with_fewer_threads_while_a_core_is_busy_and_records_it(monkeypatch):
    from bench.runtime.threads import CoreLoad

    monkeypatch.setattr(threads, "available_cores", lambda: 2)

    class Busy:
        def read(self):
            return time.monotonic()

        def others_busy(self, since):
            return 1.0

    monkeypatch.setattr(CoreLoad, "open", classmethod(lambda cls: Busy()))
    dataset, probe = _Images(8), _Probe(pixel=False)
    todo = [(i, [(0, 32), (0, 16), (0, 8)]) for i in dataset.ids()]
    executor = LocalExecutor(workers=None)
    rows = list(executor.run(dataset, [ThreadProbeCodec()], [probe], todo))
    assert executor.thread_plan.mode == "phased" and executor.thread_plan.main == 2
    by_image = {}
    for r in rows:
        by_image.setdefault(r.image_id, set()).add(r.metrics["measure_threads"])
    assert by_image["im0"] == {2.0} and all(by_image[f"im{i}"] == {1.0} for i in range(1, 8))
    assert executor.main_threads_used == {"1": 7, "2": 1}
