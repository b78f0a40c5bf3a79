"""Typed errors. Every error carries a ``fix``: what the user should do about it.

Library code raises these; only :mod:`bench.cli.app` turns them into exit codes, one per
class of error (:data:`EXIT_CODES`, also printed by ``bench --help``).
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


class MetricOptionError(ConfigError, MetricError):
    """A metric's option has a bad value: a configuration error (exit 2), raised before any image."""


class StoreError(BenchError):
    """The run store is unreadable, damaged, locked or read-only, or a run id is unknown."""

    exit_code = 4


class StoreDamagedError(StoreError):
    """The run store's file is damaged (SQLite integrity check failed or a page is unreadable)."""


class OutputError(BenchError):
    """An output path cannot be written: a file where a folder is needed (or the reverse),
    no permission, disk full."""

    exit_code = 7


class IncomparableError(BenchError):
    """Two runs cannot be compared fairly (exit 5)."""

    exit_code = 5


class ProtocolMismatchError(IncomparableError):
    """Two runs were made under different protocols and cannot be compared."""


class IncompleteRunError(IncomparableError):
    """A compared run has not finished every image (killed or still running); ``--allow-partial``
    compares the images both runs finished."""


class TooFewImagesError(IncomparableError):
    """``--gate significant`` on an interval from fewer images than the minimum (default 10)."""


class AllRowsFailedError(BenchError):
    """A run stored rows, and every one of them failed: nothing was coded and measured."""

    exit_code = 8


REGRESSION_EXIT = 6  # `bench compare`: run B is worse than run A beyond the tolerance
INTERNAL_EXIT = 1    # an unexpected error (a bug): one line, the traceback with -v
INTERRUPTED_EXIT = 130  # Ctrl-C (SIGINT), as a shell reports 128 + 2
TERMINATED_EXIT = 143   # SIGTERM (kill, a scheduler's stop), as a shell reports 128 + 15
BROKEN_PIPE_EXIT = 141  # the reader of stdout left (`bench … | head`), as a shell reports 128 + SIGPIPE

# exit code -> what it means; the one table of exit codes (``bench --help`` prints it, each line
# within 100 columns)
EXIT_CODES: dict[int, str] = {
    0: "success",
    INTERNAL_EXIT: "unexpected error (a bug: run with -v for the traceback and report it)",
    2: "usage or configuration: bad option, --param value, rate, card or name (ConfigError)",
    3: "missing data or unavailable component: dataset, weights, binary, package (UnavailableError)",
    4: "run store: unreadable, damaged, locked, read-only, or unknown run id (StoreError)",
    5: "runs not comparable: other protocols, an unfinished run, too few images (IncomparableError)",
    REGRESSION_EXIT: "regression: run B worse than A (bench compare), newest checkpoint worse (bench sweep --gate)",
    7: "output: a path cannot be written (a file where a folder belongs, no permission) (OutputError)",
    8: "every row of the run failed: nothing was measured; rows are stored (AllRowsFailedError)",
    INTERRUPTED_EXIT: "interrupted (Ctrl-C): finished rows are stored",
    TERMINATED_EXIT: "terminated (SIGTERM): finished rows are stored, as with Ctrl-C",
    BROKEN_PIPE_EXIT: "stdout closed by its reader (`bench … | head`): the output stops there, no message",
}
