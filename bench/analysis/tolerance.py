"""The regression gate's tolerances: the default and the check that refuses a NaN or infinite
one (which would disable the gate). No pandas, no numpy: the command line reads it to build
its parser."""

from __future__ import annotations

import math
from collections.abc import Mapping

from bench.errors import ConfigError

#: Default BD-rate tolerance in percent.
DEFAULT_TOLERANCE = 1.0
#: Fewest images an interval must come from for ``--gate significant`` to judge it
#: (``bench compare --min-images``): two values always give an interval that may exclude 0.
MIN_IMAGES = 10


def check_tolerances(tolerance: float, delta_tolerance: Mapping[str, float] | None = None) -> None:
    """Refuse a NaN or infinite tolerance (it would disable the gate) with a ConfigError."""
    for name, value in [("tolerance", tolerance), *((f"delta tolerance {k}", v)
                                                    for k, v in (delta_tolerance or {}).items())]:
        try:
            finite = math.isfinite(float(value))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise ConfigError(f"{name} {value!r} is not a finite number (a NaN or infinite tolerance "
                              "disables the gate)", "give a finite value, e.g. --tolerance 1 (percent)")
