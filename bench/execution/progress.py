"""Progress of a run, one tqdm bar per phase: ``coding``, each network metric, then each
dataset-level metric (:mod:`bench.analysis.dataset_level`).

Each bar counts its own items (codec × rate × image codings, measured rows, rate points) and
its ETA comes from its own rate since its first item finished (``smoothing=0``: the mean
over the phase, not a jumpy instantaneous rate), so loading a network or resuming a run does
not distort it. Rows already stored by an earlier attempt are not counted (the bar's label
says how many were resumed).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm


class PhaseBar:
    """A named tqdm bar whose clock starts at its first finished item."""

    def __init__(self, name: str, total: int, position: int, *, disable: bool = False, unit: str = "img") -> None:
        self.name = name
        self.bar = tqdm(total=total, desc=name, position=position, disable=disable, unit=unit, smoothing=0,
                        dynamic_ncols=True, leave=True, file=sys.stderr)
        self.started = False

    def update(self, n: int = 1) -> None:
        if n <= 0:
            return
        if not self.started:  # the first item (model loading, pool start-up) sets the clock, not the rate
            self.started = True
            self.bar.reset(self.bar.total)
            self.bar.initial = self.bar.n = 1  # the rate counts the items after the first
            self.bar.refresh()
            n -= 1
        if n:
            self.bar.update(n)

    @property
    def n(self) -> int:
        return int(self.bar.n)

    def close(self) -> None:
        self.bar.close()


class RunProgress:
    """The bars of one run: ``coding`` and one per network metric (``metric <name>``).

    ``tick(phase, n)`` is the executor's hook (phase "coding" or a metric name); ``row_done()``
    tops every metric bar up to the rows finished so far (rows served from the cache or whose
    metric failed are measured by nobody but are done)."""

    def __init__(self, total: int, network_metrics: Sequence[str], *, resumed: int = 0, disable: bool = False) -> None:
        label = f"coding ({resumed} resumed)" if resumed else "coding"
        self.bars = {"coding": PhaseBar(label, total, 0, disable=disable)}
        for i, name in enumerate(network_metrics, 1):
            self.bars[name] = PhaseBar(f"metric {name}", total, i, disable=disable)
        self.rows = 0

    def tick(self, phase: str, n: int = 1) -> None:
        bar = self.bars.get(phase)
        if bar is not None:
            bar.update(n)

    def row_done(self, n: int = 1) -> None:
        self.rows += n
        for bar in self.bars.values():
            if bar.n < self.rows:
                bar.update(self.rows - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
