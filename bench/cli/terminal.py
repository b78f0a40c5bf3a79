"""What reaches the terminal: printable text only, and SIGTERM handled as Ctrl-C is.

Text from the store (tags, codec labels, run ids, errors) may hold control characters; an
ANSI escape sequence in a tag would recolour or rewrite the user's terminal. :class:`Printable`
wraps ``sys.stdout`` while a command runs and shows every C0/C1 control character but line
feed and tab as a visible ``\\xNN`` escape.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

WIDTH = 100  # terminal columns every line of bench's own output fits

_KEEP = {"\n", "\t"}
CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(c) not in _KEEP}


def fit(text: str, width: int = WIDTH, squash: bool = True) -> str:
    """``text`` within ``width`` columns, an ellipsis marking a cut; ``squash``: on one line,
    its indent kept and other runs of whitespace made one space (``False``: aligned columns)."""
    text = str(text)
    if squash:
        body = text.lstrip(" ")
        text = " " * (len(text) - len(body)) + " ".join(body.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def printable(text: str, keep_cr: bool = False) -> str:
    """``text`` with control characters (ESC, BEL, CR …) shown as ``\\xNN``; ``keep_cr`` keeps
    carriage returns (progress bars redraw their line with them)."""
    table = {k: v for k, v in CONTROL.items() if not (keep_cr and k == 0x0D)}
    return text.translate(table)


class Printable:
    """A text stream that writes :func:`printable` text to ``stream`` (everything else delegated)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run stops as on Ctrl-C (rows kept)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


@contextlib.contextmanager
def guarded_terminal() -> Iterator[None]:
    """While a command runs: stdout printable only, SIGTERM raises :class:`Terminated`."""
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    stdout = sys.stdout
    sys.stdout = Printable(stdout)
    try:
        yield
    finally:
        if sys.stdout.__class__ is Printable:
            sys.stdout = stdout
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
