"""FID/KID computed once: exact fast FID vs torch-fidelity, values stored with their states'
hash, read back by report (no recomputation) and recomputed only when the states change;
progress bars name their phases."""

from __future__ import annotations

import os

import fakes_bench
import numpy as np
import pytest
import torch
from synthetic_runs import feature_state, make_run

from bench.analysis.dataset_level import compute_run, state_hash
from bench.cli import main
from bench.metrics import BUILTIN
from bench.metrics.base import Pair, State
from bench.metrics.fidelity import DIM, FID, KID
from bench.metrics.frechet import clear_cache, frechet_distance, reference
from bench.report.summary import summarise
from bench.storage.store import Row, Store


def _torch_fidelity_fid(rec: np.ndarray, ref: np.ndarray) -> float:
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    return float(fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(rec)),
                                          fid_features_to_statistics(torch.from_numpy(ref)), False)[KEY_METRIC_FID])


def _features(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inception-like features (non-negative, correlated) of originals and reconstructions."""
    rng = np.random.default_rng(seed)
    ref = np.maximum(rng.normal(size=(n, d)) @ (np.eye(d) + 0.05 * rng.normal(size=(d, d))), 0) * 0.3
    return np.maximum(ref + rng.normal(0, 0.1, size=ref.shape), 0), ref


def _reduced_fid(rec: np.ndarray, ref: np.ndarray) -> float:
    """torch-fidelity's formula with its eigvals on the N×N matrix X̃₁X̃₂ᵀX̃₂X̃₁ᵀ/(N−1)², whose
    eigenvalues are the non-zero ones of Σ₁Σ₂ (exact when N ≤ D)."""
    n = len(rec)
    x1, x2 = rec - rec.mean(0), ref - ref.mean(0)
    small = (x1 @ x2.T) @ (x2 @ x1.T) / (n - 1) ** 2
    tr_sqrt = np.sqrt(np.linalg.eigvals(small).astype("complex128")).real.sum()
    return float(np.sum((rec.mean(0) - ref.mean(0)) ** 2) + np.trace(np.cov(rec, rowvar=False))
                 + np.trace(np.cov(ref, rowvar=False)) - 2 * tr_sqrt)


# N > D: full-rank covariances (D = 2048 against torch-fidelity: benchmarks/report_speed.py)
@pytest.mark.parametrize(("n", "d"), [(300, 128), (129, 128), (600, 512)])
def test_frechet_distance_equals_torch_fidelity(n: int, d: int) -> None:
    rec, ref = _features(n, d, n + d)
    clear_cache()
    expected = _torch_fidelity_fid(rec, ref)
    assert frechet_distance(rec, ref) == pytest.approx(expected, rel=1e-6)
    # the second call uses the cached reference factor and gives the same number
    assert frechet_distance(rec.copy(), ref.copy()) == frechet_distance(rec, ref)
    other = rec * 1.1 + 0.01  # another reconstruction against the same (cached) reference
    assert frechet_distance(other, ref) == pytest.approx(_torch_fidelity_fid(other, ref), rel=1e-6)


def test_a_singular_reference_covariance_takes_the_eigen_factor() -> None:
    rec, ref = _features(300, 128, 3)
    ref[:, -1] = 1.0  # a constant feature: Σ_ref is singular and has no Cholesky factor
    clear_cache()
    assert not reference(ref, factor=True).triangular and reference(rec, factor=True).triangular
    assert frechet_distance(rec, ref) == pytest.approx(_torch_fidelity_fid(rec, ref), rel=1e-6)
    assert frechet_distance(ref, rec) == pytest.approx(_torch_fidelity_fid(ref, rec), rel=1e-6)


def test_frechet_distance_below_the_feature_dimension_is_exact() -> None:
    """N < D: Σ₁Σ₂ has rank < N and torch-fidelity's D×D ``eigvals`` returns D − N spurious
    eigenvalues of size ~eps·‖Σ₁‖‖Σ₂‖ whose square roots add up (1e-5 relative at N = 40,
    D = 2048). The exact value: torch-fidelity's own formula on the N×N matrix that carries
    the same non-zero eigenvalues."""
    rec, ref = _features(40, DIM, 7)
    exact = _reduced_fid(rec, ref)
    ours = frechet_distance(rec, ref)
    assert ours == pytest.approx(exact, rel=1e-7)
    tf = _torch_fidelity_fid(rec, ref)
    assert 0 <= ours - tf <= 1e-4 * tf  # torch-fidelity's spurious √eigenvalues only ever lower its value


def test_stored_fid_equals_torch_fidelity_on_the_same_features(store_path) -> None:
    with Store(store_path) as store:
        run_id = make_run(store, points=3, images=5, miou=False)
        assert compute_run(store, run_id, progress=False) == 6  # FID and KID at 3 rate points
        stored = store.dataset_values(run_id)
        rows = [r for r in store.rows(run_id) if r.rate == "7"]
    rec = np.concatenate([r.states["fid"]["rec"] for r in rows])
    ref = np.concatenate([r.states["fid"]["ref"] for r in rows])
    _digest, values = stored[("jpeg", "7", "fid")]
    assert values["fid"] == FID().compute(FID().merge_all([r.states["fid"] for r in rows]))["fid"]
    assert values["fid"] == pytest.approx(_reduced_fid(rec, ref), rel=1e-7)
    # N = 5 < D: torch-fidelity's D×D eigvals adds its spurious roots (see the test above)
    tf = _torch_fidelity_fid(rec, ref)
    assert 0 <= values["fid"] - tf <= 1e-5 * tf
    assert values["fid_n"] == 5
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

    kid = kid_features_to_metric(torch.from_numpy(rec), torch.from_numpy(ref), kid_subsets=1, kid_subset_size=5,
                                 rng_seed=2020, verbose=False)[KEY_METRIC_KID_MEAN]
    assert stored[("jpeg", "7", "kid")][1]["kid"] == pytest.approx(float(kid), rel=1e-6)


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Calls of FID.compute and KID.compute."""
    calls = {"fid": 0, "kid": 0}
    for cls in (FID, KID):
        original = cls.compute

        def compute(self, state, _original=original, _name=cls.name):
            calls[_name] += 1
            return _original(self, state)

        monkeypatch.setattr(cls, "compute", compute)
    return calls


def test_second_report_performs_no_fid_computation(tmp_path, counted) -> None:
    with Store(tmp_path / "bench.sqlite") as store:
        run_id = make_run(store, points=26, images=3, miou=False)
        other = make_run(store, points=26, images=3, miou=False, seed=1, run_id="demo-synthetic0002")
        compute_run(store, other, progress=False)  # as bench run does at its end
    assert counted == {"fid": 26, "kid": 26}
    assert main(["--out", str(tmp_path), "report", run_id]) == 0
    assert counted == {"fid": 52, "kid": 52}  # a run stored without its values: computed once, stored
    first = (tmp_path / run_id / "summary.csv").read_text()
    assert main(["--out", str(tmp_path), "report", run_id]) == 0
    assert counted == {"fid": 52, "kid": 52}, "report"
    assert main(["--out", str(tmp_path), "compare", run_id, other]) in (0, 6)  # 6: a regression found
    assert counted == {"fid": 52, "kid": 52}, "compare"
    assert main(["--out", str(tmp_path), "report", other]) == 0
    assert counted == {"fid": 52, "kid": 52}  # read back: no FID/KID computed by report or compare
    assert (tmp_path / run_id / "summary.csv").read_text() == first


def test_values_are_recomputed_only_where_the_states_changed(store_path, counted) -> None:
    with Store(store_path) as store:
        run_id = make_run(store, points=4, images=3, miou=False)
        compute_run(store, run_id, progress=False)
        assert counted == {"fid": 4, "kid": 4}
        before = summarise(store, run_id).set_index("rate")["fid (random weights)"]
        assert counted == {"fid": 4, "kid": 4}
        # one image of one rate point re-run with another reconstruction
        row = next(r for r in store.rows(run_id) if r.rate == "11")
        new = feature_state(row.states["fid"]["rec"] + 1.0, row.states["fid"]["ref"], row.image_id)
        store.put(run_id, Row(row.codec, row.rate, row.image_id, height=row.height, width=row.width,
                              bytes=row.bytes, bpp=row.bpp, metrics=row.metrics, states={"fid": new, "kid": new}))
        after = summarise(store, run_id).set_index("rate")["fid (random weights)"]
        assert counted == {"fid": 5, "kid": 5}
    assert after["11"] > before["11"]
    assert after.drop("11").equals(before.drop("11"))


def test_read_only_store_values_are_stored_when_the_file_is_writable(store_path, counted, monkeypatch) -> None:
    with Store(store_path) as store:
        run_id = make_run(store, points=2, images=3, miou=False)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only file
    with Store(store_path, readonly=True) as ro:
        df = summarise(ro, run_id)
        assert ro.dataset_values(run_id) == {}
    assert np.isfinite(df["fid (random weights)"]).all() and counted["fid"] == 2
    monkeypatch.setattr(os, "access", real_access)
    with Store(store_path, readonly=True) as ro:  # `bench report` opens the store read-only
        summarise(ro, run_id)
        assert counted["fid"] == 4 and len(ro.dataset_values(run_id)) == 4  # stored by a second connection
        summarise(ro, run_id)
    assert counted["fid"] == 4


def test_state_hash_sees_every_byte_and_the_params() -> None:
    fid = FID()
    a = feature_state(np.zeros(DIM), np.ones(DIM), "x")
    b = {k: v.copy() for k, v in a.items()}
    assert state_hash("fid", fid, {}, [a]) == state_hash("fid", fid, {}, [b])
    b["rec"][0, 7] = 1e-300
    assert state_hash("fid", fid, {}, [a]) != state_hash("fid", fid, {}, [b])
    assert state_hash("fid", fid, {}, [a]) != state_hash("fid", fid, {"patch": 256}, [a])


# -- progress -------------------------------------------------------------------------------
class PixelFID(FID):
    """FID's state and compute on features made from pixels (no network): a 'network' metric
    with a stored dataset-level value."""

    name = "pixfid"

    def requirements(self):
        return []

    def prepare(self) -> None:
        return None

    def update_batch(self, states, pairs):
        return [self.update(s, p) for s, p in zip(states, pairs)]

    def update(self, state: State, pair: Pair) -> dict[str, float]:
        def feats(image: np.ndarray) -> np.ndarray:
            flat = image.astype(np.float64).ravel()
            return np.resize(flat, DIM)[None, :] / 255.0

        k = feature_state(feats(pair.reconstruction), feats(pair.sample.image), pair.sample.id)
        for key, value in k.items():
            state[key] = np.concatenate([state[key], value])
        return {}


def test_progress_names_every_phase(tmp_path, monkeypatch, capsys) -> None:
    from bench.execution.runner import RunConfig, execute

    monkeypatch.setitem(BUILTIN, "pixfid", ("test_dataset_values:PixelFID", "pixel FID"))
    fakes_bench.use_fakes(tmp_path, monkeypatch, 2)
    with Store(tmp_path / "bench.sqlite") as store:
        run_id = execute(RunConfig(dataset="pngs", codecs=["quant"], metrics=["psnr", "pixfid"], workers=1),
                         store, progress=True)
        stored = store.dataset_values(run_id)
    err = capsys.readouterr().err
    assert "coding" in err and "metric pixfid" in err and "metric psnr" not in err  # psnr: no network
    assert "6/6" in err  # 2 images × 3 rate points
    assert "dataset-level pixfid: computing 3 rate points" in err
    assert "dataset-level pixfid: done in" in err
    assert err.index("dataset-level pixfid: computing") < err.index("dataset-level pixfid: done in")
    assert len(stored) == 3 and all(np.isfinite(v["fid"]) for _h, v in stored.values())


def test_phase_bar_eta_comes_from_its_own_items_after_the_first() -> None:
    """A phase whose first item took 100 s (loading a network) and then 1 s per item: the
    ETA of the 7 items left is 7 s, not the 233 s of a rate over the whole elapsed time."""
    from tqdm import tqdm

    from bench.execution.progress import PhaseBar

    now = [0.0]
    bar = PhaseBar("metric fid", 10, 0)  # drawn on stderr (captured)
    bar.bar._time = lambda: now[0]
    for t in (100.0, 101.0, 102.0):
        now[0] = t
        bar.update(1)
    info = bar.bar.format_dict
    assert bar.n == 3 and info["elapsed"] == 2.0
    line = tqdm.format_meter(**{**info, "ncols": 100})
    assert "<00:07" in line, line
    bar.close()
