"""One registry for codecs, datasets, metrics and segmenters.

An entry maps a name to a lazy ``"module:Class"`` target plus metadata (the card).
Nothing is imported until :meth:`Entry.load` is called, so a codec whose optional
dependency is missing does not break the others. :meth:`Entry.load` returns only a
subclass of the kind's base class (:mod:`bench.registry.kinds`): a card cannot make the
registry call an arbitrary function.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.errors import ConfigError, UnknownNameError
from bench.registry.kinds import KINDS, get_kind


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Entry:
    """A registered component: ``target`` is ``"package.module:Object"``."""

    name: str
    kind: str
    target: str
    card: dict[str, Any] = field(default_factory=dict)
    source: str = "builtin"  # path of the YAML card, "entry point <dist>", or "builtin"

    def load(self) -> type:
        """Import and return the class named by ``target``, checked to be a subclass of the
        kind's base class before anything of it is called (:class:`ConfigError` otherwise)."""
        module_name, _, attr = self.target.partition(":")
        if not module_name or not attr:
            raise ConfigError(
                f"{self.kind} {self.name!r}: entry {self.target!r} is not of the form 'module:Class'",
                f"fix the 'entry' field of {self.source}",
            )
        module = importlib.import_module(module_name)
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise ConfigError(
                f"{self.kind} {self.name!r}: module {module_name!r} has no {attr!r}",
                f"fix the 'entry' field of {self.source}",
            ) from None
        base = _import_target(get_kind(self.kind).base)
        if not (inspect.isclass(obj) and issubclass(obj, base)):
            raise ConfigError(
                f"{self.kind} {self.name!r}: entry {self.target!r} is not a {base.__module__}.{base.__name__} "
                "subclass; a card may only name a component class, nothing else is called",
                f"point the 'entry' field of {self.source} at a {base.__name__} subclass",
            )
        return obj


class Registry:
    """Name -> :class:`Entry` for one kind of component."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {tuple(KINDS)}")
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
