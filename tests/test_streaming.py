"""Memory is flat in dataset size: the local executor streams images (at most the current
one and the one being measured are alive, whatever the dataset's length), and rows leave
it as they are finished."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import pytest
from fakes_bench import QuantCodec

from bench.datasets.base import Dataset, Sample
from bench.execution.local import LocalExecutor
from bench.metrics.base import Metric, Pair, State


class LiveImages(Dataset):
    """``n`` generated 64×64 images; ``alive`` counts the originals not yet freed."""

    name = "live"

    def __init__(self, n: int) -> None:
        self.n = n
        self.alive = 0

    def ids(self) -> list[str]:
        return [f"im{i:03d}" for i in range(self.n)]

    def files(self, image_id: str) -> list[Path]:
        return []

    def load(self, image_id: str) -> Sample:
        image = np.random.default_rng(int(image_id[2:])).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        self.alive += 1
        weakref.finalize(image, self._freed)
        return Sample(image_id, image)

    def _freed(self) -> None:
        self.alive -= 1


class PeakAlive(Metric):
    """Records the dataset's live-image count whenever it measures a batch."""

    name = "peakalive"

    def __init__(self, dataset: LiveImages) -> None:
        super().__init__()
        self.dataset = dataset
        self.seen: list[int] = []

    def init(self) -> State:
        return {"n": np.zeros(())}

    def update(self, state: State, pair: Pair) -> dict[str, float]:
        self.seen.append(self.dataset.alive)  # reference counting frees at once (no cycles here)
        state["n"] += 1
        return {"peakalive": float(self.dataset.alive)}

    def compute(self, state: State) -> dict[str, float]:
        return {"peakalive": float(max(self.seen, default=0))}


def _peak(n: int, lookahead: int) -> tuple[int, int]:
    dataset = LiveImages(n)
    metric = PeakAlive(dataset)
    codec = QuantCodec()
    todo = [(image_id, [(0, 32), (0, 4)]) for image_id in dataset.ids()]
    rows = 0
    for row in LocalExecutor(workers=1, lookahead=lookahead).run(dataset, [codec], [metric], todo):
        assert row.status == "ok", row.error
        rows += 1
    return max(metric.seen), rows


@pytest.mark.parametrize("lookahead", [1, 2])
def test_live_images_do_not_grow_with_the_dataset(lookahead: int) -> None:
    small, n_small = _peak(4, lookahead)
    large, n_large = _peak(40, lookahead)
    assert (n_small, n_large) == (8, 80)
    assert large == small <= lookahead + 1  # the image being measured plus those read ahead
    assert large >= lookahead  # read-ahead really happens (the overlap of codecs with metrics)
