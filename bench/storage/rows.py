"""One stored result row (:class:`Row`: image × codec × rate) and its column encodings:
JSON objects, and the metric states as one npz blob (arrays named ``metric/key``)."""

from __future__ import annotations

import io
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, allow_nan=True, default=str)


@dataclass
class Row:
    """One image × codec × rate result. ``bytes`` maps part name → byte count."""

    codec: str
    rate: str
    image_id: str
    status: str = "ok"
    error: str | None = None
    height: int | None = None
    width: int | None = None
    bytes: dict[str, int] = field(default_factory=dict)
    bpp: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # metric -> state
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    metric_errors: dict[str, str] = field(default_factory=dict)  # metric -> error; the row stays "ok"
    created: float | None = field(default=None, compare=False)  # when stored (time.time()); None before


def json_object(text: str | None, what: str) -> dict[str, Any]:
    """A JSON object column; JSON of another shape (``'[]'``, ``'3'``) raises TypeError (damage)."""
    value = json.loads(text or "{}")
    if not isinstance(value, dict):
        raise TypeError(f"{what} is a JSON {type(value).__name__}, not an object")
    return value


def row_from_columns(r: tuple[Any, ...], metrics: Collection[str] | None = None) -> Row:
    """A Row from the columns selected by :meth:`Store.rows` (raises on unparsable or wrongly
    shaped JSON, or npz)."""
    for i, what in ((0, "codec"), (1, "rate"), (2, "image_id"), (3, "status")):
        if not isinstance(r[i], str):
            raise TypeError(f"{what} is {type(r[i]).__name__}, not text")
    if r[8] is not None and not isinstance(r[8], (int, float)):
        raise TypeError(f"bpp is {type(r[8]).__name__}, not a number")
    return Row(
        codec=r[0], rate=r[1], image_id=r[2], status=r[3], error=r[4], height=r[5], width=r[6],
        bytes=json_object(r[7], "bytes"), bpp=r[8], metrics=json_object(r[9], "metrics"),
        states=unpack_states(r[10], metrics) if r[10] else {},
        seconds=json_object(r[11], "seconds"), notes=json_object(r[12], "notes"),
        metric_errors=json_object(r[13], "metric_errors") if len(r) > 13 else {},
        created=float(r[14]) if len(r) > 14 and isinstance(r[14], (int, float)) else None,
    )


def pack_states(states: dict[str, dict[str, np.ndarray]]) -> bytes:
    """All metric states of one row as one npz blob (arrays named ``metric/key``)."""
    flat: dict[str, Any] = {f"{metric}/{key}": np.asarray(v) for metric, st in states.items() for key, v in st.items()}
    buf = io.BytesIO()
    np.savez(buf, **flat)
    return buf.getvalue()


def unpack_states(blob: bytes, metrics: Collection[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The states of :func:`pack_states`; only those of ``metrics`` when given (the others'
    arrays are not read: FID's and KID's feature rows are most of a row's bytes)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        for name in npz.files:
            metric, _, key = name.partition("/")
            if metrics is None or metric in metrics:
                out.setdefault(metric, {})[key] = npz[name]
    return out
