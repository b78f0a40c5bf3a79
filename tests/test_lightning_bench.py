"""BenchCallback inside Trainer.fit: monitored by ModelCheckpoint, validation off, DDP on 2 CPU
processes, one MLflow run per training, fixed subset and time budget.

The model is a FactorizedPrior(8, 8) trained on two small images (its PSNR rises over 3
epochs); references are CompressAI's own ``eval_model`` inference on each epoch's checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("compressai.ans")
pl = pytest.importorskip("lightning.pytorch")
sys.path.insert(0, str(Path(__file__).parent))
from lightning_helpers import Compressor, loader, write_images  # noqa: E402

from bench.integrations.lightning import BenchCallback, NeverEvaluatedWarning  # noqa: E402

KEY = "bench/factorizedprior/psnr/rate_live"


def _trainer(tmp_path, callbacks, *, epochs=3, val=True, logger=True):
    from lightning.pytorch.loggers import CSVLogger

    return pl.Trainer(max_epochs=epochs, accelerator="cpu", callbacks=callbacks, num_sanity_val_steps=0,
                      logger=CSVLogger(tmp_path / "logs", name="c") if logger else False,
                      limit_val_batches=1.0 if val else 0, enable_checkpointing=any(
                          isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks),
                      enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)


def _csv(tmp_path):
    import pandas as pd

    return pd.read_csv(next((tmp_path / "logs").rglob("metrics.csv")))


def _eval_model_psnr(state: dict, images) -> float:
    from compressai.utils.eval_model.__main__ import inference

    module = Compressor()
    module.load_state_dict(state)
    net = module.net.eval()
    net.update(force=True)
    return float(np.mean([inference(net, torch.from_numpy(i).permute(2, 0, 1).float() / 255)["psnr-rgb"]
                          for i in images]))


def test_model_checkpoint_keeps_the_best_bench_epoch(tmp_path):
    images = write_images(tmp_path / "imgs")
    bench_cb = BenchCallback(lambda m: m.net, str(tmp_path / "imgs"), metrics=["psnr"], store=tmp_path / "b.sqlite")
    best = pl.callbacks.ModelCheckpoint(tmp_path / "best", monitor=KEY, mode="max", save_top_k=1,
                                        filename="{epoch}")
    every = pl.callbacks.ModelCheckpoint(tmp_path / "all", save_top_k=-1, filename="{epoch}")
    module = Compressor()
    _trainer(tmp_path, [bench_cb, best, every]).fit(module, loader(images), loader(images, 1))
    steps = sorted(bench_cb.results)
    psnr = [bench_cb.results[s]["psnr"].mean() for s in steps]
    assert steps == [4, 8, 12] and psnr[0] < psnr[1] < psnr[2]  # training raises the quality
    assert Path(best.best_model_path).name == "epoch=2.ckpt" and float(best.best_model_score) == pytest.approx(
        psnr[2], rel=1e-6)  # Lightning keeps float32
    # each epoch's value is CompressAI's eval_model on that epoch's weights: three different PSNRs
    for epoch, value in enumerate(psnr):
        state = torch.load(tmp_path / "all" / f"epoch={epoch}.ckpt", weights_only=False)["state_dict"]
        assert value == pytest.approx(_eval_model_psnr(state, images), abs=1e-4)
    logged = _csv(tmp_path).dropna(subset=[KEY])
    assert np.allclose(logged[KEY], psnr) and list(logged["step"]) == [3, 7, 11]  # Lightning's val steps


def test_validation_off_still_evaluates(tmp_path):
    images = write_images(tmp_path / "imgs")
    bench_cb = BenchCallback(lambda m: m.net, str(tmp_path / "imgs"), metrics=["psnr"], store=tmp_path / "b.sqlite")
    early = pl.callbacks.EarlyStopping(monitor=KEY, mode="max", patience=5, check_on_train_epoch_end=True)
    _trainer(tmp_path, [bench_cb, early], epochs=2, val=False).fit(Compressor(), loader(images))
    assert sorted(bench_cb.results) == [4, 8]
    logged = _csv(tmp_path).dropna(subset=[KEY])
    assert list(logged["step"]) == [3, 7] and np.allclose(logged[KEY], [bench_cb.results[s]["psnr"].mean()
                                                                          for s in (4, 8)])


def test_never_evaluating_warns_once(tmp_path):
    images = write_images(tmp_path / "imgs", n=1)
    bench_cb = BenchCallback(lambda m: m.net, str(tmp_path / "imgs"), when="validation", store=tmp_path)
    with pytest.warns(NeverEvaluatedWarning, match="never evaluated") as record:
        _trainer(tmp_path, [bench_cb], epochs=1, val=False, logger=False).fit(Compressor(), loader(images, 1))
    assert len([w for w in record if w.category is NeverEvaluatedWarning]) == 1 and not bench_cb.results


def test_fixed_subset_and_time_budget(tmp_path):
    images = write_images(tmp_path / "imgs", n=3)
    chosen = BenchCallback(lambda m: m.net, str(tmp_path / "imgs"), images=["img2", "img0"], store=tmp_path)
    budget = BenchCallback(lambda m: m.net, str(tmp_path / "imgs"), time_budget=1e-3, store=tmp_path, prefix="b2")
    with pytest.warns(UserWarning, match="fits 1 of 3 images"):
        _trainer(tmp_path, [chosen, budget], epochs=2, logger=False).fit(Compressor(), loader(images[:2], 1),
                                                                         loader(images[:2], 1))
    assert sorted(chosen.results) == sorted(budget.results) == [1, 2]  # one batch per epoch
    for step in (1, 2):
        assert sorted(chosen.results[step]["image_id"]) == ["img0", "img2"]
        assert list(budget.results[step]["image_id"]) == ["img0"]  # the same first image at every epoch


def test_ddp_on_two_cpu_processes(tmp_path):
    """The factory calls update(force=True) on what it gets: a copy on rank 0, so gloo's
    collectives see equal buffers on both ranks; both ranks log rank 0's value."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                          os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MASTER_PORT": str(20000 + os.getpid() % 20000)}
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "lightning_helpers.py"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=170, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["logged"] == ranks[1]["logged"] and np.isfinite(ranks[0]["logged"])
    assert ranks[0]["evaluated"] == [2, 4] and ranks[1]["evaluated"] == []  # rank 0 evaluates, rank 1 waits
    assert ranks[0]["quantiles_shape"] == ranks[1]["quantiles_shape"]  # the live modules were not updated


def read_wandb_history(folder: Path, wait_s: float = 30.0) -> list[dict[str, str]]:
    """The history rows of the one offline run under ``folder``, read from its ``.wandb`` file
    once it holds the run's exit record: wandb's service process may still be writing it when
    ``finish()`` returns (seen once on a loaded machine: no history record yet); ``wait_s``
    bounds the wait."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        rows, kinds = _wandb_records(folder)
        if "exit" in kinds or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _wandb_records(folder: Path) -> tuple[list[dict[str, str]], set[str]]:
    """(history rows, record kinds seen) of the ``.wandb`` file: a LevelDB-style log (7-byte
    file header ":W&B" + magic + version; 32 KiB blocks of records, each crc32 u32, length u16,
    type u8: 1 full, 2 first, 3 middle, 4 last) of protobuf Records."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = folder.rglob("offline-run-*/run-*.wandb")
    data, pos, chunk, rows, kinds = path.read_bytes(), 7, b"", [], set()
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a record header is padding
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        chunk, pos = chunk + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            kinds.add(str(record.WhichOneof("record_type")))
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): i.value_json for i in record.history.item})
    return rows, kinds


def test_one_tracker_run_per_training_with_three_point_histories(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    from mlflow import MlflowClient

    from bench.integrations.trackers import mlflow_uri

    monkeypatch.setenv("WANDB_MODE", "offline")  # no network: local run files only
    images = write_images(tmp_path / "imgs", n=1)
    bench_cb = BenchCallback(lambda m: m.net, str(tmp_path / "imgs"), metrics=["psnr"], store=tmp_path / "b.sqlite",
                             log=[f"mlflow:{tmp_path / 'mlruns'}", f"wandb:{tmp_path / 'wandb'}"])
    _trainer(tmp_path, [bench_cb]).fit(Compressor(), loader(images, 1), loader(images, 1))
    steps = sorted(bench_cb.results)
    psnr = [bench_cb.results[s]["psnr"].mean() for s in steps]
    lightning_steps = list(_csv(tmp_path).dropna(subset=[KEY])["step"])
    assert len(steps) == 3 and len(set(psnr)) == 3
    client = MlflowClient(tracking_uri=mlflow_uri(str(tmp_path / "mlruns"))[0])
    (run,) = client.search_runs([client.get_experiment_by_name("bench").experiment_id])  # one run, 3 evaluations
    history = client.get_metric_history(run.info.run_id, KEY[len("bench/"):])
    assert [p.step for p in history] == lightning_steps and np.allclose([p.value for p in history], psnr)
    assert json.loads(run.data.tags["bench.runs"]) == {str(s): bench_cb.results[g]["run_id"].iloc[0]
                                                      for s, g in zip(lightning_steps, steps)}
    rows = [r for r in read_wandb_history(tmp_path / "wandb") if KEY[len("bench/"):] in r]
    assert [int(r["_step"]) for r in rows] == lightning_steps
    assert np.allclose([float(r[KEY[len("bench/"):]]) for r in rows], psnr)
