"""The metric protocol: ``init`` / ``update`` / ``merge`` / ``compute``.

A metric's *state* is a plain ``dict[str, np.ndarray]`` so it can be stored as bytes
with every per-image row, shipped between processes, and merged in any order. A
per-image metric (PSNR) and a dataset-level one (FID, mIoU from summed intersections
and unions) work the same way:

    state = metric.init()
    values = metric.update(state, pair)   # per-image values for the row (may be {})
    state = metric.merge(state, other)    # associative, commutative
    summary = metric.compute(state)       # dataset-level values
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..datasets.base import Sample

State = dict[str, np.ndarray]


@dataclass
class Pair:
    """An original and its reconstruction (both H×W×3 uint8 RGB) plus the coding cost."""

    sample: Sample
    reconstruction: np.ndarray
    total_bytes: int
    codec: str = ""
    rate: str = ""


class Metric(ABC):
    """Base class of metrics. ``higher_is_better`` orients curves and comparisons."""

    name: str = "metric"  # set to the card's name when built from a card
    version: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = True
    unit: ClassVar[str] = ""

    def __init__(self, *, weights_dir: str | None = None, allow_random_weights: bool = False,
                 device: str | None = None) -> None:
        """Options every metric accepts (networks use them; pixel metrics ignore them).

        ``weights_dir``: extra folder searched for weight files (see bench.runtime.weights).
        ``allow_random_weights``: smoke tests only — run the real architecture with random
        weights when the file is missing; ``describe()`` then says ``random_weights: True``.
        ``device``: "cpu", "cuda", … (None: CUDA when available).
        """
        self.weights_dir = weights_dir
        self.allow_random_weights = allow_random_weights
        self.device = device
        self.random_weights = False  # set by subclasses that fell back to random weights

    def requirements(self) -> list[Any]:
        """Weights or packages needed (see :class:`bench.codecs.base.Requirement`)."""
        return []

    def prepare(self) -> None:
        """Load networks and resolve weights now, so that :meth:`describe` names the exact
        weights (sha256, or random) before the run id and cache keys are derived from it."""

    def describe(self) -> dict[str, Any]:
        """Identity recorded with the run (add weights hashes, protocol, …)."""
        out: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.random_weights:
            out["random_weights"] = True
        return out

    @abstractmethod
    def init(self) -> State:
        """An empty state."""

    @abstractmethod
    def update(self, state: State, pair: Pair) -> dict[str, float]:
        """Add one pair to ``state`` (in place) and return its per-image values."""

    def update_batch(self, states: Sequence[State], pairs: Sequence[Pair]) -> list[dict[str, float]]:
        """``update`` for several pairs at once (one network forward for the batch).

        The default loops over :meth:`update`; network metrics override it. Values must
        not depend on how pairs are batched.
        """
        return [self.update(state, pair) for state, pair in zip(states, pairs)]

    def merge(self, a: State, b: State) -> State:
        """Combine two states. Default: element-wise sum of same-named arrays."""
        out = {k: np.array(v, copy=True) for k, v in a.items()}
        for k, v in b.items():
            out[k] = out[k] + v if k in out else np.array(v, copy=True)
        return out

    @abstractmethod
    def compute(self, state: State) -> dict[str, float]:
        """Dataset-level values from a (merged) state."""

    def merge_all(self, states: Iterable[State]) -> State:
        total = self.init()
        for s in states:
            total = self.merge(total, s)
        return total
