"""Scale-out on a Ray cluster: shards of codec × rate × image-chunk, rows merged into one store.

Each shard loads its images, codes them with one codec at one rate point and measures
them (metrics batched across the shard's images), then returns its rows, metric states
included. The driver writes rows to the store as shards finish, so resume works as with
the local executor, and dataset-level metrics (FID, mIoU) merge the per-image states at
report time exactly as for a local run. Ray is optional: ``pip install ray``.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

from .codecs.base import Codec
from .datasets.base import Dataset
from .errors import UnavailableError
from .metrics.base import Metric
from .pipeline import base_row, code, measure
from .refcache import default_dir
from .store import Row
from .threads import THREAD_ENV, ThreadPlan, limit_process_threads


def _shard(dataset: Dataset, codec: Codec, metrics: Sequence[Metric], rate: Any, image_ids: Sequence[str],
           batch_size: int, semantics: Any = None) -> list[Row]:
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
        coded = code(codec, rate, sample, class_set, semantics)
        row = base_row(codec, rate, sample, coded)
        if coded.recon is None:
            done.append(row)
            continue
        samples.append(sample)
        rows.append(row)
        recons.append(coded.recon)
    measure(metrics, samples, rows, recons, batch_size=batch_size)
    return done + rows


class RayExecutor:
    """Run shards on Ray (``address``: an existing cluster, e.g. "ray://host:10001" or "auto";
    None starts a local one). ``chunk``: images per shard."""

    def __init__(self, *, address: str | None = None, chunk: int = 16, batch_size: int = 8,
                 num_cpus: int | None = None, env: dict[str, str] | None = None) -> None:
        self.address = address
        self.chunk = max(1, chunk)
        self.batch_size = batch_size
        self.num_cpus = num_cpus
        self.env = dict(env or {})
        self.thread_plan: ThreadPlan | None = None  # set by run(): one thread per Ray task (num_cpus=1)

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise UnavailableError("the Ray executor needs the 'ray' package", "pip install ray") from None
        if not ray.is_initialized():
            env = {"BENCH_CACHE_DIR": str(default_dir().resolve()), "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                   **{var: "1" for var in THREAD_ENV}, **self.env}
            ray.init(address=self.address, num_cpus=None if self.address else self.num_cpus,
                     include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                     runtime_env={"env_vars": {k: v for k, v in env.items() if v}})
        return ray

    def run(self, dataset: Dataset, codecs: Sequence[Codec], metrics: Sequence[Metric],
            todo: Sequence[tuple[str, list[tuple[int, Any]]]], semantics: Any = None) -> Iterator[Row]:
        ray = self._ray()
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))  # tasks at once, each on 1 CPU, 1 thread
        self.thread_plan = ThreadPlan(cores=cpus, main=1, workers=cpus, worker_threads=1, mode="ray")
        by_point: dict[tuple[int, str], tuple[Any, list[str]]] = {}
        for image_id, pending in todo:
            for ci, rate in pending:
                by_point.setdefault((ci, codecs[ci].rate_label(rate)), (rate, []))[1].append(image_id)
        remote = ray.remote(_shard)
        ds_ref, metrics_ref = ray.put(dataset), ray.put(list(metrics))
        codec_refs = [ray.put(c) for c in codecs]
        sem_ref = ray.put(semantics)
        futures = [remote.remote(ds_ref, codec_refs[ci], metrics_ref, rate, ids[i:i + self.chunk], self.batch_size,
                                 sem_ref)
                   for (ci, _label), (rate, ids) in by_point.items() for i in range(0, len(ids), self.chunk)]
        while futures:
            ready, futures = ray.wait(futures, num_returns=1)
            yield from ray.get(ready[0])
