"""``DataFrame.attrs`` that cost nothing to carry: pandas deep-copies ``attrs`` at every
operation (``__finalize__``), which was 0.7 s of a report of 40 rate points for the column
metadata alone."""

from __future__ import annotations

from typing import Any


class Shared(dict):
    """A dict held in ``DataFrame.attrs`` that pandas shares instead of deep-copying it at every
    operation (``__finalize__``: 0.7 s of a report of 40 rate points). Read-only by
    convention: code that changes one builds a new dict (as :func:`frame_attrs` callers do)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Shared:
        return self


def frame_attrs(**values: Any) -> dict[str, Any]:
    """``DataFrame.attrs`` with every dict value :class:`Shared` (cheap to carry along)."""
    return {k: Shared(v) if isinstance(v, dict) and not isinstance(v, Shared) else v for k, v in values.items()}
