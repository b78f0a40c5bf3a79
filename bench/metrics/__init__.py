"""Metrics. Each metric subclasses :class:`bench.metrics.base.Metric`.

Metrics are registered like codecs and datasets: one YAML card each in the top-level
``metrics/`` folder (``name``, ``entry: module:Class``, ``description``, optional ``params``),
or a third-party entry point in the ``semcodec_bench.metrics`` group. ``BUILTIN`` holds
metrics registered in code for the current process only (tests, notebooks):
``BUILTIN[name] = ("module:Class", "description")`` then :func:`bench.registry.catalog.reset`.
"""

from .base import Metric, Pair, State

BUILTIN: dict[str, tuple[str, str]] = {}

__all__ = ["BUILTIN", "Metric", "Pair", "State"]
