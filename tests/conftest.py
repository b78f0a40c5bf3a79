"""Shared fixtures. ``shared_dir`` is ../shared next to the checkout (skip when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BENCH_SHARED_DIR", ROOT.parent / "shared"))

# xdist workers share the cores: torch threads per worker = cores // workers (two workers with two
# OpenMP threads each on 2 cores stall each other: the SPIC adapter test took 33 s instead of 10)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only real test material; tests using it skip on a fresh clone."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present (real test material is optional)")
    return SHARED


@pytest.fixture()
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "bench.sqlite"


@pytest.fixture(autouse=True)
def _isolated_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the project's cards unless it sets BENCH_CARD_PATH itself."""
    from bench.registry import catalog

    monkeypatch.delenv("BENCH_CARD_PATH", raising=False)
    catalog.reset()


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test touches the internet: downloads are off (BENCH_OFFLINE=1) and the fetch cache is a
    per-session temporary folder; tests of `bench fetch` set a loopback mirror themselves."""
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path_factory.getbasetemp() / "bench-data"))
    monkeypatch.delenv("BENCH_MIRROR", raising=False)
    monkeypatch.delenv("BENCH_AUTO_FETCH", raising=False)
    from bench.runtime import fetch

    fetch.forget_failures()  # a download that failed in an earlier test may work against this one's mirror
