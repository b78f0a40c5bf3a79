"""The Ray executor on a local cluster gives exactly the rows of the local executor."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import fakes_bench
import pytest

from bench.execution.runner import RunConfig, execute
from bench.metrics import BUILTIN
from bench.storage.store import Store

ray = pytest.importorskip("ray")
TESTS = Path(__file__).resolve().parent


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    monkeypatch.setitem(BUILTIN, "countmae", ("fakes_bench:CountingMetric", "counting MAE"))
    monkeypatch.setitem(BUILTIN, "gpuprobe", ("fakes_bench:GpuProbeMetric", "GPU given or not"))
    data = fakes_bench.use_fakes(tmp_path, monkeypatch, 3)
    yield data
    if ray.is_initialized():
        ray.shutdown()


def _rows(store: Store, run_id: str) -> dict:
    return {(r.codec, r.rate, r.image_id): r for r in store.rows(run_id)}


def test_ray_rows_and_dataset_metrics_equal_local(env, tmp_path):
    from bench.execution.ray_executor import RayExecutor
    from bench.report import summarise

    (env / "img900.png").write_bytes(b"not a png")  # failures travel through Ray too
    config = RunConfig("pngs", ["quant", "crashy"], ["psnr", "msssim", "countmae"], use_cache=False)
    with Store(tmp_path / "local.sqlite") as store:
        local_id = execute(config, store, progress=False)
        local, local_summary = _rows(store, local_id), summarise(store, local_id)
    with Store(tmp_path / "ray.sqlite") as store:
        ray_id = execute(config, store, progress=False, executor=RayExecutor(num_cpus=2, chunk=2))
        remote, remote_summary = _rows(store, ray_id), summarise(store, ray_id)
        # one thread per Ray task, as many tasks as the cluster's CPUs: never more threads than cores
        assert store.run(ray_id)["meta"]["threads"] == {"cores": 2, "main": 1, "workers": 2, "worker_threads": 1,
                                                        "mode": "ray"}
    assert ray_id == local_id
    assert local.keys() == remote.keys() and len(local) == 4 * 4
    for key, row in local.items():
        other = remote[key]
        assert (row.status, row.bytes, row.bpp, row.metrics) == (other.status, other.bytes, other.bpp, other.metrics)
        assert (row.error or "").split("\n")[0] == (other.error or "").split("\n")[0]
        for metric, state in row.states.items():
            for k, v in state.items():
                assert (v == other.states[metric][k]).all()
    cols = [c for c in local_summary.columns if c not in ("n_ok", "n_failed")]
    assert local_summary[cols].equals(remote_summary[cols])


def test_network_shards_ask_ray_for_a_gpu_share_and_get_one(env, tmp_path):
    """A cluster with a GPU (Ray's logical one here): shards running a network get a device
    (0.5 GPU each), and none with gpus_per_task=0; the share is recorded with the thread plan."""
    from bench.execution.ray_executor import RayExecutor

    config = RunConfig("pngs", ["quant"], ["psnr", "gpuprobe"], use_cache=False)
    with Store(tmp_path / "ray.sqlite") as store:
        shared = execute(config, store, progress=False, executor=RayExecutor(num_cpus=2, num_gpus=1, gpus_per_task=0.5))
        given = {r.metrics["gpuprobe"] for r in store.rows(shared) if r.status == "ok"}
        assert given == {1.0} and store.run(shared)["meta"]["threads"]["gpus_per_task"] == 0.5
        none = execute(replace(config, tag="cpu"), store, progress=False, executor=RayExecutor(gpus_per_task=0))
        assert {r.metrics["gpuprobe"] for r in store.rows(none) if r.status == "ok"} == {0.0}
        assert "gpus_per_task" not in store.run(none)["meta"]["threads"]


def test_shard_options_ask_for_gpus_only_where_a_network_runs():
    from fakes_bench import CountingMetric, QuantCodec, SemanticQuantCodec

    from bench.execution.ray_executor import shard_options
    from bench.metrics.pixel import PSNR

    classical, learned = QuantCodec(), SemanticQuantCodec()
    network, on_cpu = CountingMetric(), CountingMetric(device="cpu")
    assert shard_options(learned, [PSNR()], 0, None) == {"num_cpus": 1}  # no GPU in the cluster
    assert shard_options(learned, [PSNR()], 2, None) == {"num_cpus": 1, "num_gpus": 1.0}
    assert shard_options(classical, [PSNR()], 2, None) == {"num_cpus": 1}  # pixel metrics only
    assert shard_options(classical, [PSNR(), network], 2, 0.25) == {"num_cpus": 1, "num_gpus": 0.25}
    assert shard_options(classical, [PSNR(), on_cpu], 2, None) == {"num_cpus": 1}
    assert shard_options(learned, [], 2, 0) == {"num_cpus": 1}
    assert shard_options(learned, [], 0.5, 4) == {"num_cpus": 1, "num_gpus": 0.5}  # capped by the cluster
