"""A run's summary is stored when the run ends and read back while its rows are unchanged:
equal to a fresh one (values and attrs), no row state unpacked on a second read, recomputed
after a row changes, never used for a subset of the rows, and computed as before when the
store cannot be written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fakes_bench import count_calls

import bench.storage.rows as rows_mod
from bench import evaluate
from bench.analysis.coverage import restrict
from bench.report.summary import _summarise, load_run, summarise
from bench.storage.store import Store


@pytest.fixture(scope="module")
def run_store(tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("sumcache") / "bench.sqlite"
    df = evaluate(["jpeg"], "demo", metrics=["psnr", "kid"], limit=2, rates=[20, 80], store=path,
                  allow_random_weights=True)
    return path, str(df["run_id"].iloc[0])


@pytest.fixture
def unpacks(monkeypatch):
    return count_calls(monkeypatch, rows_mod, "unpack_states")


def test_the_stored_summary_equals_a_fresh_one_and_unpacks_nothing(run_store, unpacks):
    path, run_id = run_store
    with Store(path, readonly=True) as store:
        stored = summarise(store, run_id)
        assert unpacks["n"] == 0  # stored by the run itself: no row state read
        run, rows = load_run(store, run_id)
        fresh = _summarise(store, run, rows)
    pd.testing.assert_frame_equal(stored, fresh, check_exact=True)
    assert dict(stored.attrs) == dict(fresh.attrs)
    assert "kid (random weights)" in stored.columns and stored["kid (random weights)"].notna().all()


def test_a_changed_row_is_summarised_again(run_store, tmp_path, unpacks):
    path, run_id = run_store
    copy = tmp_path / "bench.sqlite"
    copy.write_bytes(path.read_bytes())
    with Store(copy) as store:
        before = summarise(store, run_id)
        row = next(r for r in store.rows(run_id) if r.rate == "20")
        row.metrics["psnr"] = 99.0  # a retried row stores another value
        row.states["psnr"]["sum_psnr"] = row.states["psnr"]["sum_psnr"] * 0 + 99.0
        store.put(run_id, row)
        n = unpacks["n"]
        after = summarise(store, run_id)
        assert unpacks["n"] > n  # recomputed from the rows
        assert after.loc[after.rate == "20", "psnr"].item() != before.loc[before.rate == "20", "psnr"].item()
        n = unpacks["n"]
        assert summarise(store, run_id).equals(after) and unpacks["n"] == n  # and stored again


def test_a_subset_of_the_rows_is_never_served_the_whole_runs_summary(run_store):
    path, run_id = run_store
    with Store(path, readonly=True) as store:
        whole = summarise(store, run_id)
        loaded = load_run(store, run_id)
        first = sorted({r.image_id for r in loaded[1]})[:1]
        part = summarise(store, run_id, restrict(loaded, frozenset(first)))
    assert (part["n_ok"] == 1).all() and (whole["n_ok"] == 2).all()


def test_a_store_it_cannot_write_is_summarised_every_time(run_store, tmp_path, unpacks, monkeypatch):
    import bench.storage.summaries as summaries

    path, run_id = run_store
    copy = tmp_path / "bench.sqlite"
    copy.write_bytes(path.read_bytes())
    with Store(copy) as store:
        store.db.execute("DELETE FROM summaries")
        store.db.commit()
    monkeypatch.setattr(summaries.os, "access", lambda *_a: False)  # as for a file of another user
    with Store(copy, readonly=True) as store:
        for _ in range(2):
            n = unpacks["n"]
            assert summarise(store, run_id)["n_ok"].tolist() == [2, 2]
            assert unpacks["n"] > n


def test_rows_with_some_states_read_only_theirs_and_are_summarised_from_the_store(run_store):
    path, run_id = run_store
    with Store(path, readonly=True) as store:
        full = list(store.rows(run_id))
        some = list(store.rows(run_id, states=["psnr"]))
        assert [set(r.states) for r in full] == [{"psnr", "kid"}] * len(full)
        assert all(set(r.states) == {"psnr"} for r in some)
        for a, b in zip(full, some):
            assert a.states["psnr"].keys() == b.states["psnr"].keys()
            assert all((a.states["psnr"][k] == b.states["psnr"][k]).all() for k in a.states["psnr"])
        loaded = load_run(store, run_id, states=["psnr"])
        assert not loaded[1].states  # not all states: a summary is never computed from these rows
        pd.testing.assert_frame_equal(summarise(store, run_id, loaded), summarise(store, run_id), check_exact=True)
