"""The background tracker process keeps out of the evaluation's way: lower priority, set-up
before the first run, crops recomputed in the child (and kept across steps), wandb started early."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bench import evaluate
from bench.api import make_config
from bench.storage.store import Store

sys.path.insert(0, str(Path(__file__).parent))

KW = {"metrics": ["psnr"], "limit": 1, "rates": {"jpeg": [20, 50]}, "progress": False}


def _niceness(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of stat(5); fields[0] is field 3 (state)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads niceness from /proc")
def test_writer_process_runs_below_the_evaluation(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    import os
    import time

    from bench.integrations.background import NICE
    from bench.integrations.trackers import open_tracker

    monkeypatch.delenv("BENCH_TRACKER_NICE", raising=False)
    tracker = open_tracker(f"tensorboard:{tmp_path / 'tb'}", tmp_path)
    try:
        deadline = time.monotonic() + 20
        while _niceness(tracker._proc.pid) == os.nice(0) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _niceness(tracker._proc.pid) == max(NICE, os.nice(0)) > os.nice(0)
        assert _niceness(os.getpid()) == os.nice(0)  # this process keeps its own priority
    finally:
        tracker.close()


def test_crops_of_registered_codecs_are_coded_in_the_writer_process(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import bench.integrations.trackers as trackers

    def not_here(*_a, **_k):
        raise AssertionError("crops computed in the evaluating process")

    monkeypatch.setattr(trackers, "reconstruction_crops", not_here)  # this process only; the child uses tracking's
    evaluate(["jpeg"], "demo", store=tmp_path / "s.sqlite", log=f"tensorboard:{tmp_path / 'tb'}", step=3, **KW)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    crops = [t for t in acc.Tags()["images"] if t.startswith("crops/")]
    assert "crops/original" in crops and len(crops) == 3


def test_crop_cache_keeps_registered_codecs_and_recomputes_instances(tmp_path, monkeypatch):
    import bench.execution.pipeline as pipeline
    from bench.codecs.pillow_codecs import JpegCodec
    from bench.integrations.tracking import reconstruction_crops

    calls = []
    real = pipeline.code
    monkeypatch.setattr(pipeline, "code", lambda codec, *a, **k: calls.append(codec.name) or real(codec, *a, **k))
    store = Store(tmp_path / "s.sqlite")
    rows = evaluate(["jpeg"], "demo", store=store, **KW)
    config = make_config(["jpeg"], "demo", metrics=["psnr"], limit=1, rates={"jpeg": [20, 50]})
    calls.clear()  # the evaluation's own codings
    cache: dict = {}
    first = reconstruction_crops(config, store, rows["run_id"].iloc[0], cache=cache)
    assert calls == ["jpeg", "jpeg"] and len(first) == 3
    again = reconstruction_crops(config, store, rows["run_id"].iloc[0], cache=cache)
    assert calls == ["jpeg", "jpeg"] and all(np.array_equal(first[k], again[k]) for k in first)  # served
    other = make_config(["jpeg"], "demo", metrics=["psnr"], limit=1, rates={"jpeg": [20, 50]},
                        params={"jpeg": {"subsampling": "444"}})
    reconstruction_crops(other, store, rows["run_id"].iloc[0], cache=cache)
    assert len(calls) == 4  # other codec params: other crops

    class Mine(JpegCodec):
        name = "mine"
        version = "1"

    inst = evaluate([Mine()], "demo", store=store, metrics=["psnr"], limit=1, rates={"mine": [20, 50]})
    config = make_config([Mine()], "demo", metrics=["psnr"], limit=1, rates={"mine": [20, 50]})
    del calls[4:]
    for _ in range(2):
        reconstruction_crops(config, store, inst["run_id"].iloc[0], cache=cache)
    assert calls[4:] == ["mine"] * 4  # an instance (a model in training) is coded at every step


def test_wandb_run_starts_before_the_first_write_and_takes_its_name(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from bench.integrations.tracking import Payload
    from bench.integrations.wandb_tracker import WandbTracker

    monkeypatch.setenv("WANDB_MODE", "offline")
    tracker = WandbTracker(tmp_path / "wb")
    tracker.prepare()
    try:
        assert tracker.run is not None  # the service and the run exist before any result
        tracker.write(Payload("demo-abc", 2, scalars={"jpeg/psnr/rate_50": 30.0}, params={"dataset.name": "demo"}))
        assert tracker.run.name == "demo-abc" and tracker.run.config["dataset.name"] == "demo"
    finally:
        tracker.close()
    from test_lightning_bench import read_wandb_history

    (row,) = read_wandb_history(tmp_path / "wb")
    assert int(row["_step"]) == 2 and float(row["jpeg/psnr/rate_50"]) == 30.0
