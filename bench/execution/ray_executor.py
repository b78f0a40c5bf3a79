"""Scale-out on a Ray cluster: shards of codec × rate × image-chunk, rows merged into one store.

Each shard loads its images, codes them with one codec at one rate point and measures
them (metrics batched across the shard's images), then returns its rows, metric states
included. The driver writes rows to the store as shards finish, so resume works as with
the local executor, and dataset-level metrics (FID, mIoU) merge the per-image states at
report time exactly as for a local run. Ray is optional: ``pip install ray``.

On a cluster with GPUs, a shard that runs a network — a learned codec (not ``parallel_safe``)
or a network metric not pinned to the CPU — asks Ray for ``gpus_per_task`` GPUs (default 1;
0.25 lets four shards share one), so Ray gives it a device instead of hiding them all
(``CUDA_VISIBLE_DEVICES=""``) and leaving it one CPU thread. Classical shards with pixel
metrics ask for none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from bench.codecs.base import Codec
from bench.datasets.base import Dataset
from bench.errors import UnavailableError
from bench.execution.guard import coding_timeout
from bench.execution.pipeline import base_row, code_within, measure
from bench.metrics.base import Metric
from bench.runtime.refcache import default_dir
from bench.runtime.threads import THREAD_ENV, ThreadPlan, is_network, limit_process_threads
from bench.storage.store import Row


def _shard(dataset: Dataset, codec: Codec, metrics: Sequence[Metric], rate: Any, image_ids: Sequence[str],
           batch_size: int, semantics: Any = None, timeout: float | None = None) -> list[Row]:
    """One shard's rows (runs inside a Ray worker, one CPU: torch on one thread)."""
    limit_process_threads(1)
    class_set = dataset.class_set.name if dataset.class_set else None
    done: list[Row] = []
    samples, rows, recons = [], [], []
    for image_id in image_ids:
        try:
            sample = dataset.get(image_id)
        except Exception as err:  # recorded, the shard goes on
            done.append(Row(codec.name, codec.rate_label(rate), image_id, status="error",
                            error=f"cannot load image: {type(err).__name__}: {err}"))
            continue
        coded = code_within(codec, rate, sample, class_set, semantics, coding_timeout(codec, timeout))
        row = base_row(codec, rate, sample, coded)
        if coded.recon is None:
            done.append(row)
            continue
        samples.append(sample)
        rows.append(row)
        recons.append(coded.recon)
    measure(metrics, samples, rows, recons, batch_size=batch_size)
    return done + rows


def needs_gpu(codec: Codec, metrics: Sequence[Metric]) -> bool:
    """Whether a shard of ``codec`` with ``metrics`` runs a network that a GPU would serve: a
    learned codec (not ``parallel_safe``), or a network metric not pinned to the CPU."""
    if not codec.parallel_safe:
        return True
    return any(is_network(m) and not str(getattr(m, "device", None) or "").startswith("cpu") for m in metrics)


def shard_options(codec: Codec, metrics: Sequence[Metric], cluster_gpus: float,
                  gpus_per_task: float | None) -> dict[str, float]:
    """Ray resources of one shard: one CPU, plus ``gpus_per_task`` GPUs (None: 1, capped by the
    cluster's) when the cluster has GPUs and the shard :func:`needs_gpu`."""
    options: dict[str, float] = {"num_cpus": 1}
    if cluster_gpus > 0 and needs_gpu(codec, metrics):
        share = 1.0 if gpus_per_task is None else float(gpus_per_task)
        if share > 0:
            options["num_gpus"] = min(share, cluster_gpus)
    return options


class RayExecutor:
    """Run shards on Ray (``address``: an existing cluster, e.g. "ray://host:10001" or "auto";
    None starts a local one). ``chunk``: images per shard; ``gpus_per_task``: GPUs a network
    shard asks for on a cluster that has them (None: 1; 0: none; see :func:`shard_options`)."""

    def __init__(self, *, address: str | None = None, chunk: int = 16, batch_size: int = 8,
                 num_cpus: int | None = None, num_gpus: int | None = None, gpus_per_task: float | None = None,
                 env: dict[str, str] | None = None, timeout: float | None = None) -> None:
        if gpus_per_task is not None and not 0 <= gpus_per_task:
            from bench.errors import ConfigError

            raise ConfigError(f"gpus per Ray task {gpus_per_task} is negative", "give 0 (none), a share like 0.25, or 1")
        self.address = address
        self.chunk = max(1, chunk)
        self.batch_size = batch_size
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus  # a local cluster's GPUs (None: Ray detects them)
        self.gpus_per_task = gpus_per_task
        self.env = dict(env or {})
        self.timeout = timeout  # seconds per coding (None: each card's; 0: none), see bench.execution.guard
        self.thread_plan: ThreadPlan | None = None  # set by run(): one thread per Ray task (num_cpus=1)

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise UnavailableError("the Ray executor needs the 'ray' package", "pip install ray") from None
        if not ray.is_initialized():
            from bench.runtime.fetch import data_dir

            # workers find fetched weights where the driver put them (a shared folder on a cluster)
            env = {"BENCH_CACHE_DIR": str(default_dir().resolve()), "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                   "BENCH_DATA_DIR": str(data_dir().resolve()), "BENCH_OFFLINE": os.environ.get("BENCH_OFFLINE", ""),
                   "BENCH_MIRROR": os.environ.get("BENCH_MIRROR", ""),
                   **{var: "1" for var in THREAD_ENV}, **self.env}
            ray.init(address=self.address, num_cpus=None if self.address else self.num_cpus,
                     num_gpus=None if self.address else self.num_gpus,
                     include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                     runtime_env={"env_vars": {k: v for k, v in env.items() if v}})
        return ray

    def run(self, dataset: Dataset, codecs: Sequence[Codec], metrics: Sequence[Metric],
            todo: Sequence[tuple[str, list[tuple[int, Any]]]], semantics: Any = None) -> Iterator[Row]:
        ray = self._ray()
        resources = ray.cluster_resources()
        cpus = max(1, int(resources.get("CPU", 1)))  # tasks at once, each on 1 CPU, 1 thread
        gpus = float(resources.get("GPU", 0))
        options = [shard_options(c, metrics, gpus, self.gpus_per_task) for c in codecs]
        self.thread_plan = ThreadPlan(cores=cpus, main=1, workers=cpus, worker_threads=1, mode="ray",
                                      gpus_per_task=max((o.get("num_gpus", 0.0) for o in options), default=0.0))
        by_point: dict[tuple[int, str], tuple[Any, list[str]]] = {}
        for image_id, pending in todo:
            for ci, rate in pending:
                by_point.setdefault((ci, codecs[ci].rate_label(rate)), (rate, []))[1].append(image_id)
        remote = ray.remote(_shard)
        ds_ref, metrics_ref = ray.put(dataset), ray.put(list(metrics))
        codec_refs = [ray.put(c) for c in codecs]
        sem_ref = ray.put(semantics)
        futures = [remote.options(**options[ci]).remote(ds_ref, codec_refs[ci], metrics_ref, rate,
                                                         ids[i:i + self.chunk], self.batch_size, sem_ref,
                                                         self.timeout)
                   for (ci, _label), (rate, ids) in by_point.items() for i in range(0, len(ids), self.chunk)]
        while futures:
            ready, futures = ray.wait(futures, num_returns=1)
            yield from ray.get(ready[0])
