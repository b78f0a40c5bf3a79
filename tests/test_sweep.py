"""bench sweep over three tiny random-init SQ-GAN checkpoints (Lightning layout)."""

from __future__ import annotations

import contextlib
import io

import pandas as pd
import pytest
from sweep_fixtures import DEMO_MICRO, write_checkpoints

from bench.analysis.checkpoints import find_checkpoints, parse_name
from bench.analysis.sweep import settings_key
from bench.cli import main
from bench.errors import ConfigError
from bench.execution.runner import RunConfig
from bench.storage.store import Store

SWEEP = ["--codec", "sqgan", "--dataset", "demo", *DEMO_MICRO, "--param", "sqgan.model=micro",
         "--param", "sqgan.device=cpu", "--metrics", "psnr", "--limit", "1", "--rates", "0.4:0.4,1:1", "-q"]


def test_step_and_epoch_from_lightning_names():
    assert parse_name("epoch=012.ckpt") == (None, 12)
    assert parse_name("step=1200.ckpt") == (1200, None)
    assert parse_name("epoch=3-step=1200.ckpt") == (1200, 3)
    assert parse_name("last.ckpt") == (None, None)
    assert parse_name("model_it4500.pt", r"_it(\d+)") == (4500, None)
    assert parse_name("ckpt-9-at-77.pt", r"at-(?P<step>\d+)") == (77, None)
    for bad in ("(", "ckpt", "(a)"):  # not a regex, no group, a group that is no number
        with pytest.raises(ConfigError, match="--step-pattern"):
            parse_name("a.ckpt", bad)


def test_step_from_checkpoint_metadata(tmp_path):
    import torch

    for name, step in (("a.ckpt", 30), ("b.ckpt", 10)):
        torch.save({"state_dict": {"w": torch.zeros(1)}, "global_step": step, "epoch": 1}, tmp_path / name)
    found, axis = find_checkpoints(str(tmp_path / "*.ckpt"))
    assert axis == "step" and [(c.path.name, c.x, c.source) for c in found] == [("b.ckpt", 10, "metadata"),
                                                                                  ("a.ckpt", 30, "metadata")]


@pytest.fixture(scope="module")
def degraded_sweep(tmp_path_factory):
    """Three checkpoints, the last one degraded; the first sweep, gated against the best."""
    root = tmp_path_factory.mktemp("sweep")
    write_checkpoints(root / "ckpt", [0, 1, 2], degrade_last=True)
    args = ["--out", str(root / "res"), "sweep", "--checkpoints", str(root / "ckpt" / "*.ckpt"), *SWEEP]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(args + ["--gate", "best", "--log", f"tensorboard:{root / 'tb'}"])
    return root, args, rc, buf.getvalue()


def test_sweep_runs_one_tagged_run_per_checkpoint_and_gates(degraded_sweep):
    root, args, rc, out = degraded_sweep
    assert rc == 6, out  # the degraded newest checkpoint regresses
    assert "REGRESSION" in out and "psnr regressed" in out and "rate 0.4:0.4" in out and "rate 1:1" in out
    with Store(root / "res" / "bench.sqlite") as store:
        runs = store.runs()
        assert sorted(r["meta"]["tag"] for r in runs) == ["epoch=0", "epoch=1", "epoch=2"]
        shas = {r["meta"]["codecs"]["sqgan"]["params"]["checkpoint_sha256"] for r in runs}
        assert shas == {r["meta"]["sweep"]["checkpoint_sha256"] for r in runs} and len(shas) == 3
        assert all(store.count(r["run_id"]) == 2 for r in runs)  # 1 image × 2 rate points
    dest = root / "res" / "sweep-sqgan"
    assert (dest / "sweep_sqgan.png").stat().st_size > 10_000 and (dest / "sweep_sqgan.pdf").exists()
    table = pd.read_csv(dest / "sweep.csv", dtype={"rate": str})
    assert len(table) == 6 and list(table["epoch"]) == [0, 0, 1, 1, 2, 2]
    psnr = table.groupby("epoch")["psnr"].mean()
    assert psnr[2] < min(psnr[0], psnr[1]) - 3  # the gate's verdict matches the numbers


def test_sweep_logs_each_checkpoint_at_its_step(degraded_sweep):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bench.integrations.trackers import scalar_key

    root = degraded_sweep[0]
    acc = EventAccumulator(str(root / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    table = pd.read_csv(root / "res" / "sweep-sqgan" / "sweep.csv", dtype={"rate": str})
    for rate in ("0.4:0.4", "1:1"):
        events = acc.Scalars(scalar_key("sqgan", "psnr", rate))
        assert [e.step for e in events] == [0, 1, 2]
        expected = table[table["rate"] == rate].sort_values("epoch")["psnr"].tolist()
        assert [e.value for e in events] == pytest.approx(expected, rel=1e-6)


def test_second_sweep_computes_nothing_and_first_gate_and_anchor(degraded_sweep, capsys, monkeypatch):
    root, args, _, _ = degraded_sweep
    import bench.api

    calls = []
    monkeypatch.setattr(bench.api, "run", lambda *a, **k: calls.append(a) or "never")
    with Store(root / "res" / "bench.sqlite") as store:
        first_run = next(r["run_id"] for r in store.runs() if r["meta"]["tag"] == "epoch=0")
    rc = main(args + ["--gate", "first", "--anchor", first_run])
    out = capsys.readouterr().out
    assert calls == [] and "0 of 3 checkpoints evaluated now" in out and out.count("(already evaluated)") == 3
    assert rc == 6 and "vs first checkpoint epoch=000.ckpt" in out
    bd = pd.read_csv(root / "res" / "sweep-sqgan" / "sweep_bd.csv")
    assert set(bd["metric"]) == {"psnr"} and len(bd) == 3
    # against itself the anchor's BD-metric is 0; the degraded checkpoint is far below it
    by_epoch = bd.set_index("epoch")["bd_metric"]
    assert by_epoch[0] == pytest.approx(0.0, abs=1e-9) and by_epoch[2] < -3
    # a generous tolerance on the gated metric passes
    assert main(args + ["--gate", "first", "--delta-tolerance", "psnr=100", "--tolerance", "1000"]) == 0


@pytest.mark.parametrize("option, says", [(["--gate", "no-such-run"], "no runs in"),
                                          (["--gate", "significant"], "bench compare"),
                                          (["--anchor", "no-such-run"], "no runs in")])
def test_bad_gate_or_anchor_is_refused_before_any_checkpoint_runs(tmp_path, capsys, option, says):
    (tmp_path / "epoch=000.ckpt").write_bytes(b"never loaded")
    out = tmp_path / "results"
    rc = main(["--out", str(out), "sweep", *SWEEP, "--checkpoints", str(tmp_path / "*.ckpt"), *option])
    err = capsys.readouterr().err
    assert rc in (2, 4) and says in err and "Traceback" not in err
    assert not (out / "bench.sqlite").exists()  # nothing was evaluated (the empty store is removed)


def test_settings_key_separates_protocols_but_not_checkpoints():
    def key(**kw):
        return settings_key(RunConfig(dataset="cityscapes", codecs=["sqgan"], **kw), "sqgan", "checkpoint")

    card = key()
    assert key(protocol="card") == card
    assert key(protocol="sqgan") != card and key(protocol="sqgan") != key(protocol="spic")
    assert key(codec_params={"sqgan": {"checkpoint": "a.ckpt"}}) == card  # the checkpoint is not a setting


def test_gate_fails_when_the_newest_checkpoint_codes_nothing(tmp_path, capsys):
    for name in ("step=1.ckpt", "step=2.ckpt"):  # no torch files: every row of both runs fails
        (tmp_path / name).write_text("not a checkpoint\n")
    rc = main(["--out", str(tmp_path / "res"), "sweep", *SWEEP, "--checkpoints", str(tmp_path / "*.ckpt"),
               "--gate", "first"])
    err = capsys.readouterr().err
    # a checkpoint that cannot be used is exit 3 naming it (issue 23, item 16), not a "regression"
    assert rc == 3 and "2 checkpoint(s) could not be used by sqgan" in err
    assert "step=1.ckpt" in err and "step=2.ckpt" in err and "--retry-failed" in err


def test_sweep_over_folders_of_split_checkpoints(tmp_path, monkeypatch):
    """A glob ending in "/" sweeps folders (SQ-GAN's split parts): each is hashed with every file
    inside, and that hash is the one the codec records for the run."""
    from sweep_fixtures import micro_model

    from bench.codecs.sqgan.checkpoint import save_official_layout
    from bench.runtime.weights import sha256_path

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    for step, seed in ((200, 1), (100, 0)):
        save_official_layout(micro_model(seed), tmp_path / "ckpt" / f"step={step}", form="parts")
    (tmp_path / "ckpt" / "notes.txt").write_text("a file beside the folders is not a checkpoint")
    found, axis = find_checkpoints(str(tmp_path / "ckpt" / "step=*") + "/")
    assert axis == "step" and [(c.path.name, c.x) for c in found] == [("step=100", 100), ("step=200", 200)]
    with pytest.raises(ConfigError, match="no checkpoint file matches"):  # without the "/": files only
        find_checkpoints(str(tmp_path / "ckpt" / "step=*"))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["--out", str(tmp_path / "res"), "sweep", "--checkpoints", str(tmp_path / "ckpt" / "step=*") + "/",
                   *SWEEP])
    assert rc == 0, buf.getvalue()
    with Store(tmp_path / "res" / "bench.sqlite") as store:
        runs = sorted(store.runs(), key=lambda r: r["meta"]["tag"])
        assert [r["meta"]["tag"] for r in runs] == ["step=100", "step=200"]
        for run, ckpt in zip(runs, found):
            sha = sha256_path(ckpt.path)
            assert run["meta"]["codecs"]["sqgan"]["params"]["checkpoint_sha256"] == sha
            assert run["meta"]["sweep"]["checkpoint_sha256"] == sha
    # a file changed inside a folder changes its hash: that checkpoint counts as new
    before = sha256_path(found[0].path)
    (found[0].path / "extra.txt").write_text("x")
    assert sha256_path(found[0].path) != before
