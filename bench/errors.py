"""Typed errors. Every error carries a ``fix``: what the user should do about it.

Library code raises these; only :mod:`bench.cli` turns them into exit codes.
"""

from __future__ import annotations


class BenchError(Exception):
    """Base class. ``str(err)`` is the problem followed by the fix."""

    exit_code = 1

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n  fix: {fix}" if fix else problem)


class UnknownNameError(BenchError, KeyError):
    """A codec, dataset or metric name that is not registered."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class ConfigError(BenchError):
    """A bad card, option or rate value."""

    exit_code = 2


class UnavailableError(BenchError):
    """Something the component needs (binary, weights, package) is missing."""

    exit_code = 3


class DatasetNotFoundError(UnavailableError):
    """A dataset root is missing or does not have the expected layout."""


class WeightsError(UnavailableError):
    """A weights file is missing, has the wrong hash, or the wrong keys."""


class CodecError(BenchError):
    """A codec failed on one image (recorded per image; the run goes on)."""


class MetricError(BenchError):
    """A metric cannot be computed for this input (recorded per image)."""


class StoreError(BenchError):
    """The run store is unreadable or a run id is unknown."""

    exit_code = 4


class ProtocolMismatchError(BenchError):
    """Two runs were made under different protocols and cannot be compared."""

    exit_code = 5
