"""One registry for codecs, datasets and metrics.

An entry maps a name to a lazy ``"module:object"`` target plus metadata (the card).
Nothing is imported until :meth:`Registry.load` is called, so ``bench list`` stays
fast and a codec whose optional dependency is missing does not break the others.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Iterator

from bench.errors import ConfigError, UnknownNameError

KINDS = ("codec", "dataset", "metric", "segmenter")


@dataclass(frozen=True)
class Entry:
    """A registered component: ``target`` is ``"package.module:Object"``."""

    name: str
    kind: str
    target: str
    card: dict[str, Any] = field(default_factory=dict)
    source: str = "builtin"  # path of the YAML card, or "builtin"

    def load(self) -> Any:
        """Import and return the object named by ``target``."""
        module_name, _, attr = self.target.partition(":")
        if not module_name or not attr:
            raise ConfigError(
                f"{self.kind} {self.name!r}: entry {self.target!r} is not of the form 'module:object'",
                f"fix the 'entry' field of {self.source}",
            )
        module = importlib.import_module(module_name)
        try:
            return getattr(module, attr)
        except AttributeError:
            raise ConfigError(
                f"{self.kind} {self.name!r}: module {module_name!r} has no {attr!r}",
                f"fix the 'entry' field of {self.source}",
            ) from None


class Registry:
    """Name -> :class:`Entry` for one kind of component."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry, *, replace: bool = False) -> None:
        if entry.name in self._entries and not replace:
            raise ConfigError(
                f"{self.kind} {entry.name!r} is registered twice "
                f"({self._entries[entry.name].source} and {entry.source})",
                "rename one of the cards",
            )
        self._entries[entry.name] = entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Entry:
        """The entry called ``name``; unknown names raise with close-match suggestions."""
        try:
            return self._entries[name]
        except KeyError:
            pass
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}" + (f"; {hint}" if hint else ""),
            f"`bench list {self.kind}s` shows the {len(self)} registered: {', '.join(self.names())}",
        )
