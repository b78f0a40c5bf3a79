"""Which images two compared runs both finished.

A run killed (or still running) after some of its images has rows for those images only;
comparing its means with a complete run's compares different image sets. ``bench compare``
therefore compares only the images that both sides finished — an image is *finished* for a
codec when it has a stored row (ok or failed) at every rate point the run planned for that
codec — and refuses (:class:`~bench.errors.IncompleteRunError`, exit 5) when that is not
every image of both runs, unless ``allow_partial``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.errors import IncompleteRunError
from bench.storage.store import Row

Loaded = tuple[dict[str, Any], list[Row]]


def planned_images(run: Mapping[str, Any], rows: Sequence[Row]) -> int:
    """Images the run was asked for (``meta.dataset.n_images``; else the images with a row)."""
    n = ((run.get("meta") or {}).get("dataset") or {}).get("n_images")
    return int(n) if isinstance(n, int) and not isinstance(n, bool) else len({r.image_id for r in rows})


def finished_images(run: Mapping[str, Any], rows: Sequence[Row], codec: str) -> set[str]:
    """Image ids with a row (ok or failed) at every rate point ``run`` planned for ``codec``
    (``meta.rates``; a store without it: every rate label stored for the codec)."""
    by_image: dict[str, set[str]] = {}
    for r in rows:
        if r.codec == codec:
            by_image.setdefault(r.image_id, set()).add(r.rate)
    planned = ((run.get("meta") or {}).get("rates") or {}).get(codec)
    wanted = {str(x) for x in planned} if isinstance(planned, list) and planned else \
        set().union(*by_image.values()) if by_image else set()
    return {image for image, rates in by_image.items() if wanted <= rates}


@dataclass(frozen=True)
class Coverage:
    """The images compared: ``common`` (finished by both sides for every codec pair) and
    how many each run planned and finished."""

    common: frozenset[str]
    planned_a: int
    planned_b: int
    finished_a: int
    finished_b: int

    @property
    def complete(self) -> bool:
        return len(self.common) == self.planned_a == self.planned_b

    def note(self) -> str:
        """One line: how many images were compared and why fewer than planned."""
        n = len(self.common)
        if self.complete:
            return f"images: {n} compared (every image of both runs)"
        return (f"images: {n} compared, only those both runs finished (run A finished {self.finished_a} of "
                f"{self.planned_a}, run B {self.finished_b} of {self.planned_b})")


def coverage(loaded_a: Loaded, loaded_b: Loaded, pairs: Sequence[tuple[str, str]]) -> Coverage:
    """The :class:`Coverage` of (anchor codec, test codec) ``pairs`` of run A against run B."""
    (run_a, rows_a), (run_b, rows_b) = loaded_a, loaded_b
    fin_a = [finished_images(run_a, rows_a, a) for a, _ in pairs]
    fin_b = [finished_images(run_b, rows_b, b) for _, b in pairs]
    all_a = set.intersection(*fin_a) if fin_a else set()
    all_b = set.intersection(*fin_b) if fin_b else set()
    return Coverage(frozenset(all_a & all_b), planned_images(run_a, rows_a), planned_images(run_b, rows_b),
                    len(all_a), len(all_b))


def check_complete(cov: Coverage, run_a: str, run_b: str, allow_partial: bool) -> None:
    """Refuse an incomplete comparison unless ``allow_partial``; refuse one with no common image always."""
    if cov.complete:
        return
    unfinished = [rid for rid, fin, planned in ((run_a, cov.finished_a, cov.planned_a),
                                                (run_b, cov.finished_b, cov.planned_b)) if fin < planned]
    what = (f"run {' and run '.join(unfinished)} did not finish every image" if unfinished
            else "the runs finished different images")
    if not cov.common:
        raise IncompleteRunError(f"runs {run_a} and {run_b} have no finished image in common ({what})",
                                 "finish the runs (re-run their `bench run` command: it resumes), then compare")
    if not allow_partial:
        raise IncompleteRunError(
            f"{what}: {cov.note().removeprefix('images: ')}; means over different image sets would be compared",
            f"finish the run (re-run its `bench run` command: it resumes), or pass --allow-partial to compare "
            f"the {len(cov.common)} images both runs finished")


def restrict(loaded: Loaded, images: frozenset[str]) -> Loaded:
    """``loaded`` with only the rows of ``images``."""
    run, rows = loaded
    return run, [r for r in rows if r.image_id in images]
