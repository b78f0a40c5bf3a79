"""Two rates: the real bpp of the transmitted bytes and a paper's formula rate.

Every row's ``bpp`` is 8 × Σ bytes of all parts / (H × W): what a receiver gets. A codec
whose paper reports a formula instead (SQ-GAN: 10 bits per kept token index + 1 bit per
token of each branch's mask) declares it with the numeric note ``bpp_paper`` (bpp, the
formula's total) and optionally ``bpp_paper_<part>`` (its terms); the row keeps both, never
one instead of the other.

``rate="real"`` (the default everywhere) draws and compares with the real bpp;
``rate="paper"`` uses each codec's paper rate and, for a codec without one, its real bpp
(:func:`rate_view` says which in a ``rate_basis`` column and the frame's attrs).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.modes import RateBasis

from ..errors import ConfigError
from .attrs import frame_attrs
from .order import sort_frame

RATES: tuple[RateBasis, ...] = ("real", "paper")
PAPER = "bpp_paper"
PAPER_PREFIX = "bpp_paper_"
REAL_COPY = "bpp_real"
BASIS = "rate_basis"
BASIS_PAPER = "paper formula"
BASIS_REAL = "real bytes"
#: Note names written by SQ-GAN adapters before the paper rate had its own name (version 1).
LEGACY: dict[str, str] = {"bpp_bound": PAPER, "bpp_bound_image": PAPER_PREFIX + "image",
                          "bpp_bound_semantic": PAPER_PREFIX + "semantic"}


def check_rate(rate: str) -> RateBasis:
    """``rate`` as a :data:`~bench.modes.RateBasis`; ConfigError for another value."""
    for basis in RATES:
        if rate == basis:
            return basis
    raise ConfigError(f"rate {rate!r} is unknown", "use --rate real (transmitted bytes) or --rate paper")


def paper_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """A row's paper-rate values (``bpp_paper`` and ``bpp_paper_<part>``, in bpp), legacy names mapped."""
    out = {LEGACY[k]: float(v) for k, v in metrics.items() if k in LEGACY}
    out.update({k: float(v) for k, v in metrics.items() if k == PAPER or k.startswith(PAPER_PREFIX)})
    return out


def paper_rate_rows(rows: Sequence[Any]) -> list[Any]:
    """Store rows whose ``bpp`` is the paper formula rate where the row declares one (real bpp
    elsewhere): what ``rate="paper"`` resamples (:mod:`bench.analysis.paired`)."""
    out = []
    for r in rows:
        paper = paper_values(r.metrics).get(PAPER)
        out.append(dataclasses.replace(r, bpp=paper) if paper is not None and math.isfinite(paper) else r)
    return out


def is_paper_key(key: str) -> bool:
    return key == PAPER or key.startswith(PAPER_PREFIX) or key in LEGACY


def paper_codecs(df: pd.DataFrame) -> list[str]:
    """Codecs of a summary or per-image frame with a paper rate (finite ``bpp_paper``)."""
    if PAPER not in df.columns or df.empty:
        return []
    has = np.isfinite(pd.to_numeric(df[PAPER], errors="coerce"))
    return sorted(set(df.loc[has, "codec"]))


def real_rate_codecs(df: pd.DataFrame) -> list[str]:
    """Codecs of the frame without a paper formula (``--rate paper`` uses their real bpp)."""
    with_paper = set(paper_codecs(df))
    return sorted(c for c in dict.fromkeys(df["codec"]) if c not in with_paper) if "codec" in df else []


def rate_view(df: pd.DataFrame, rate: RateBasis = "real") -> pd.DataFrame:
    """``df`` (a summary or per-image frame) with ``bpp`` holding the chosen rate.

    ``real``: ``df`` unchanged (``attrs["rate"] = "real"``). ``paper``: a copy where ``bpp`` is
    the paper's formula rate where the row has one and the real bpp elsewhere, ``bpp_real``
    keeps the real bpp beside it, ``rate_basis`` says which each row uses ("paper formula" /
    "real bytes") and ``bpp_paper`` is dropped (it is ``bpp`` now). Byte parts stay as they
    are. ``attrs["real_rate_codecs"]`` lists codecs without a paper formula.
    """
    check_rate(rate)
    if rate == "real":
        out = df.copy()
        out.attrs = {**df.attrs, "rate": "real"}
        return out
    out = df.copy()
    paper = pd.to_numeric(out[PAPER], errors="coerce") if PAPER in out else pd.Series(math.nan, index=out.index)
    has = np.isfinite(paper.astype(float))
    real = out["bpp"].astype(float)
    pos = list(out.columns).index("bpp")
    out["bpp"] = paper.where(has, real).astype(float)
    out.insert(pos + 1, REAL_COPY, real)
    out.insert(pos + 2, BASIS, np.where(has, BASIS_PAPER, BASIS_REAL))
    if PAPER in out:
        out = out.drop(columns=[PAPER])
    ci_moved: list[str] = []
    for side in ("lo", "hi"):  # bootstrap intervals (bench.report.intervals) belong to the real bpp
        name = f"bpp_{side}"
        if name in out:
            real_ci = out[name].astype(float)
            out[name] = real_ci.where(~has)  # no interval for a formula rate
            out.insert(list(out.columns).index(REAL_COPY) + 1 + len(ci_moved), f"{REAL_COPY}_{side}", real_ci)
            ci_moved.append(side)
    if {"codec", "rate", "image_id"} <= set(out.columns):
        out = sort_frame(out, ("codec", "rate", "image_id"))
    elif {"codec", "rate"} <= set(out.columns):
        out = sort_frame(out, ("codec", "bpp", "rate"))
    out = out.reset_index(drop=True)
    attrs = dict(df.attrs)
    columns = dict(attrs.get("columns") or {})
    if columns:
        columns.pop(PAPER, None)
        if "bpp" in columns and has.any():
            columns["bpp"] = {**columns["bpp"], "label": "bpp (paper rate)"}
        columns[REAL_COPY] = {"column": REAL_COPY, "key": REAL_COPY, "kind": "rate", "unit": "bpp",
                              "metric": None, "higher_is_better": False, "random_weights": False,
                              "detail": False, "label": "bpp (real)"}
        columns[BASIS] = {"column": BASIS, "key": BASIS, "kind": "key", "unit": "", "metric": None,
                          "higher_is_better": None, "random_weights": False, "detail": False, "label": ""}
        for side in ci_moved:
            if f"bpp_{side}" in columns:
                name = f"{REAL_COPY}_{side}"
                columns[name] = {**columns[f"bpp_{side}"], "column": name, "key": name}
        attrs["columns"] = {c: columns[c] for c in out.columns if c in columns}
    attrs["rate"] = "paper"
    attrs["real_rate_codecs"] = real_rate_codecs(df)
    out.attrs = frame_attrs(**attrs)
    return out


def rate_note(df: pd.DataFrame) -> str | None:
    """One sentence on the rate a (viewed) frame uses, or None for plain real bpp."""
    if df.attrs.get("rate") == "paper":
        fallback = df.attrs.get("real_rate_codecs") or []
        text = ("bpp is each codec's paper formula rate (real transmitted bpp in bpp_real)" if paper_codecs_of(df)
                else "bpp: no codec here has a paper formula rate, so it is the real transmitted bpp")
        if fallback and paper_codecs_of(df):
            text += f"; codecs without a paper formula use their real bpp: {', '.join(fallback)}"
        return text + "."
    if PAPER in df.columns and paper_codecs(df):
        return (f"bpp_paper is the paper's formula rate of {', '.join(paper_codecs(df))}, reported beside the real "
                "bpp (8 × transmitted bytes / pixels); – for codecs without one.")
    return None


def paper_codecs_of(view: pd.DataFrame) -> list[str]:
    """Codecs of a paper-rate view whose ``bpp`` is a paper formula."""
    if BASIS not in view.columns:
        return paper_codecs(view)
    return sorted(set(view.loc[view[BASIS] == BASIS_PAPER, "codec"]))
