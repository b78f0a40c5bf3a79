"""Matched-rate evaluation: bisect a classical codec's knob per image to hit a target bpp.

Learned-codec papers (HiFiC, CompressAI's comparisons) compare against classical codecs
at the *same bpp on every image*, not at a fixed quality setting: for each image the
knob is searched so that the image's bpp lands on the target. :func:`match_rate` does
that search; :class:`MatchedRateCodec` wraps a codec so the runner can evaluate it at
target bpps with no runner change (rate knob ``target_bpp``; the chosen knob is recorded
per row as ``matched_knob``).

The search assumes bpp is monotonic in the knob (true for JPEG quality, BPG/JPEG XL
quantisers, WebP quality up to small wiggles). Policy ``"below"`` (default) keeps the
highest-bpp setting whose bpp ≤ target (the classical codec never gets more bits than
the target); ``"closest"`` keeps the setting with the smallest |bpp − target|.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

import numpy as np

from bench.codecs.base import Codec, Encoded, RateKnob, Requirement, Semantics, bits_per_pixel
from bench.errors import ConfigError
from bench.modes import MatchPolicy

POLICIES: tuple[str, ...] = get_args(MatchPolicy)


@dataclass
class MatchedRate:
    """Outcome of :func:`match_rate`.

    ``knob``: the chosen rate value; ``bpp``: its bpp on this image; ``n_bytes``: total
    bytes; ``encoded``: the codec's output at ``knob``; ``hit``: False when the target is
    outside what the knob range reaches (then the nearest end of the range is returned);
    ``tried``: knob → bpp of every encode made.
    """

    knob: Any
    bpp: float
    n_bytes: int
    encoded: Encoded
    target_bpp: float
    hit: bool
    tried: dict[Any, float] = field(default_factory=dict)


def _knob_range(knob: RateKnob) -> tuple[float, float, bool]:
    numeric = [v for v in knob.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numeric or len(numeric) != len(knob.values):
        raise ConfigError(f"rate knob {knob.name!r} is not numeric ({knob.values!r}); it cannot be bisected",
                          "match rates only for codecs with a numeric knob (jpeg, webp, bpg, jpegxl, avif, …)")
    integer = all(isinstance(v, int) for v in numeric)
    lo = knob.minimum if knob.minimum is not None else min(numeric)
    hi = knob.maximum if knob.maximum is not None else max(numeric)
    return float(lo), float(hi), integer


def match_rate(codec: Codec, image: np.ndarray, target_bpp: float, *, policy: MatchPolicy = "below",
               rel_tolerance: float = 0.005, max_steps: int = 40, semantics: Semantics | None = None) -> MatchedRate:
    """Search ``codec``'s knob so the bpp of ``image`` (H×W×3 uint8) meets ``target_bpp``.

    Integer knobs are bisected exactly (≤ log2(range) + 2 encodes); real-valued knobs until
    the bpp is within ``rel_tolerance`` of the target (below it for policy "below") or
    ``max_steps`` encodes.
    """
    if policy not in POLICIES:
        raise ConfigError(f"policy {policy!r} is unknown", f"use one of {', '.join(POLICIES)}")
    if not (target_bpp > 0 and math.isfinite(target_bpp)):
        raise ConfigError(f"target bpp {target_bpp!r} must be a positive number", "e.g. 0.25")
    knob = codec.rate_knob
    lo, hi, integer = _knob_range(knob)
    h, w = image.shape[:2]
    tried: dict[Any, float] = {}
    outputs: dict[Any, Encoded] = {}

    def value_at(q: float) -> Any:
        """Knob value at quality position q ∈ [lo, hi] (q grows with bits)."""
        v = q if knob.higher_is_better else lo + hi - q
        return int(round(v)) if integer else float(v)

    def bpp_at(q: float) -> float:
        v = value_at(q)
        if v not in tried:
            enc = codec.encode(image, v, semantics=semantics)
            outputs[v], tried[v] = enc, bits_per_pixel(enc.total_bytes, h, w)
        return tried[v]

    def pick() -> Any:
        values = list(tried)
        if policy == "below":
            under = [v for v in values if tried[v] <= target_bpp]
            if under:
                return max(under, key=lambda v: tried[v])
            return min(values, key=lambda v: tried[v])
        return min(values, key=lambda v: abs(tried[v] - target_bpp))

    def result() -> MatchedRate:
        v = pick()
        b = tried[v]
        hit = b <= target_bpp if policy == "below" else abs(b - target_bpp) <= rel_tolerance * target_bpp
        if not hit and policy == "closest":  # a bracketed search is as close as the knob allows
            hit = any(x < target_bpp for x in tried.values()) and any(x > target_bpp for x in tried.values())
        return MatchedRate(v, b, outputs[v].total_bytes, outputs[v], target_bpp, hit, dict(tried))

    a, b = lo, hi
    if bpp_at(a) >= target_bpp or bpp_at(b) <= target_bpp:
        return result()  # target at or beyond an end of the knob range
    steps = 2
    while steps < max_steps:
        if integer and b - a <= 1:
            break
        mid = math.floor((a + b) / 2) if integer else (a + b) / 2
        bm = bpp_at(mid)
        steps += 1
        if not integer:
            near = (target_bpp * (1 - rel_tolerance) <= bm <= target_bpp if policy == "below"
                    else abs(bm - target_bpp) <= rel_tolerance * target_bpp)
            if near or (b - a) <= 1e-9 * (hi - lo):
                break
        if bm <= target_bpp:
            a = mid
        else:
            b = mid
    return result()


class MatchedRateCodec(Codec):
    """A codec evaluated at target bpps: each image is encoded with the knob value that
    :func:`match_rate` finds for it. Card example (``codecs/jpeg-matched.yaml``)::

        name: jpeg-matched
        entry: bench.codecs.matched:MatchedRateCodec
        rates: [0.1, 0.2, 0.4, 0.8]
        params: {codec: jpeg, policy: below}

    Rows record ``matched_knob`` (chosen value, numeric knobs), ``matched_target_bpp`` and
    ``matched_hit`` (0 when the target is outside the codec's range on that image).
    """

    name = "matched"
    version = "1"
    rate_knob = RateKnob("target_bpp", (0.1, 0.2, 0.4, 0.8), higher_is_better=True,
                                             unit="bpp", minimum=1e-4, maximum=24.0)

    def __init__(self, codec: str | Codec, *, policy: MatchPolicy = "below", rel_tolerance: float = 0.005,
                 max_steps: int = 40, **codec_params: Any) -> None:
        if isinstance(codec, Codec):
            self.inner = codec
        else:
            from bench.registry import catalog

            self.inner = catalog.make_codec(codec, **codec_params)
        if policy not in POLICIES:
            raise ConfigError(f"policy {policy!r} is unknown", f"use one of {', '.join(POLICIES)}")
        _knob_range(self.inner.rate_knob)  # refuse non-numeric knobs at construction
        self.policy, self.rel_tolerance, self.max_steps = policy, float(rel_tolerance), int(max_steps)
        self.name = f"{self.inner.name}-matched"  # a card's name replaces it (bench.registry.catalog)
        self.needs_semantics = self.inner.needs_semantics
        self.parallel_safe = self.inner.parallel_safe
        self.on_match: Callable[[MatchedRate], None] | None = None

    def requirements(self) -> list[Requirement]:
        return self.inner.requirements()

    def params(self) -> dict[str, Any]:
        return {"codec": self.inner.describe(), "policy": self.policy, "rel_tolerance": self.rel_tolerance,
                "max_steps": self.max_steps}

    def rate_label(self, rate: Any) -> str:
        return f"{float(rate):g}"

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        found = match_rate(self.inner, image, float(rate), policy=self.policy, rel_tolerance=self.rel_tolerance,
                           max_steps=self.max_steps, semantics=semantics)
        if self.on_match is not None:
            self.on_match(found)
        notes = dict(found.encoded.notes)
        if isinstance(found.knob, (int, float)):
            notes["matched_knob"] = float(found.knob)
        notes.update({"matched_target_bpp": float(rate), "matched_hit": float(found.hit),
                      "matched_encodes": float(len(found.tried))})
        return Encoded(dict(found.encoded.parts), notes)

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        return self.inner.decode(parts)
