"""The registries (codecs, datasets, metrics, segmenters) and helpers to build components.

One registration path for every kind: a YAML card (:mod:`bench.registry.cards`), or a
third-party package's entry point in the kind's group (``semcodec_bench.codecs``, …,
:mod:`bench.registry.kinds`). A built component's ``name`` is its card's name.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import math
from functools import cache
from typing import Any

from bench.errors import ConfigError
from bench.registry import cards
from bench.registry.core import Entry, Registry
from bench.registry.kinds import get_kind


def _entry_points(kind: str) -> list[Entry]:
    """Entries registered by installed packages under the kind's entry-point group."""
    out = []
    for ep in importlib.metadata.entry_points(group=get_kind(kind).group):
        dist = getattr(ep, "dist", None)
        source = f"entry point {ep.group}:{ep.name}" + (f" of {dist.name}" if dist is not None else "")
        out.append(Entry(ep.name, kind, ep.value, {"description": f"{ep.value} (third-party)"}, source))
    return out


@cache
def registry(kind: str) -> Registry:
    """The registry of ``kind`` ("codec", "dataset", "metric" or "segmenter"), built once:
    cards first (a name in an earlier card root hides later ones), then entry points whose
    name no card took."""
    reg = Registry(kind)
    for entry in cards.discover(kind):
        reg.add(entry)
    if kind == "metric":  # metrics registered in code (tests, notebooks): bench.metrics.BUILTIN
        from bench.metrics import BUILTIN

        for name, (target, description) in BUILTIN.items():
            reg.add(Entry(name, "metric", target, {"description": description}), replace=True)
    for entry in _entry_points(kind):
        if entry.name not in reg:
            reg.add(entry)
    return reg


def card_maps(kind: str, field: str) -> dict[str, Any]:
    """The union of the mapping ``field`` over every card of ``kind`` (e.g. each metric card's
    ``labels`` or ``delta_tolerance``: summary key → value); cards without it add nothing."""
    out: dict[str, Any] = {}
    for entry in registry(kind):
        value = entry.card.get(field)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{field!r} of {entry.source} must be a mapping", f"write {field}: {{key: value}}")
        out.update(value)
    return out


def reset() -> None:
    """Forget cached registries (after BENCH_CARD_PATH changes; used by tests)."""
    registry.cache_clear()


_SIMPLE = {"bool": bool, "int": int, "float": float, "str": str}


def _declared(entry: Entry, cls: type) -> dict[str, type]:
    """Param name -> declared type: the constructor's annotation when it is exactly bool, int,
    float or str (unions and ``Any`` are not checked), for an unannotated param the type of its
    default, and for a param the constructor takes through ``**kwargs`` the type of its value
    in the card's ``params``."""
    try:
        parameters = dict(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        parameters = {}
    out: dict[str, type] = {}
    for name, p in parameters.items():
        annotation = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        if p.annotation is not inspect.Parameter.empty:
            if annotation in _SIMPLE:
                out[name] = _SIMPLE[annotation]
        elif isinstance(p.default, (bool, int, float, str)):
            out[name] = type(p.default)
    for name, value in cards.card_params(entry).items():
        if name not in parameters and isinstance(value, (bool, int, float, str)):
            out[name] = type(value)
    return out


def _type_ok(declared: type, value: Any) -> bool:
    if value is None:
        return True
    if declared is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # yes/no/true/false given where a number or text is expected
        return False
    if declared is int:
        return isinstance(value, int)
    if declared is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, (str, int, float))  # text: YAML reads 444 as a number


def check_params(entry: Entry, cls: type, overrides: dict[str, Any]) -> None:
    """Refuse an override whose value is not of the param's declared type (``--param
    jpeg.optimize=banana``: ``optimize`` is a bool) with a ConfigError naming the type."""
    declared = _declared(entry, cls)
    for key, value in overrides.items():
        kind = declared.get(key)
        if kind is not None and not _type_ok(kind, value):
            example = {bool: "true or false", int: "an integer", float: "a finite number"}.get(kind, "text")
            raise ConfigError(f"{entry.kind} {entry.name!r}: param {key}={value!r} is not a {kind.__name__}",
                              f"give {example}, e.g. --param {entry.name}.{key}=... (see 'params' in {entry.source})")


def _construct(entry: Entry, overrides: dict[str, Any]) -> Any:
    cls = entry.load()  # a checked subclass of the kind's base class: nothing else is ever called
    check_params(entry, cls, overrides)
    params = cards.card_params(entry)
    params.update({k: v for k, v in overrides.items() if v is not None})
    obj: Any = cls.__new__(cls)  # type: ignore[call-overload]  # cls is a checked component class (mypy sees type)
    obj.name = entry.name  # the card's (or entry point's) name, already during __init__ (e.g. kodak's data folder)
    try:
        obj.__init__(**params)
    except (TypeError, ValueError) as err:  # an unknown param, or a value of the wrong type (int("abc"))
        given = ", ".join(f"{k}={v!r}" for k, v in overrides.items() if v is not None)
        raise ConfigError(f"{entry.kind} {entry.name!r} rejects its params ({given or 'from its card'}): {err}",
                          f"check --param {entry.name}.KEY=VALUE and 'params' in {entry.source}") from None
    obj.card = entry.card
    obj.name = entry.name  # the card's (or entry point's) name is the instance's name
    return obj


def make(kind: str, name: str, **overrides: Any) -> Any:
    """Build the component ``name`` of ``kind`` from its card; ``overrides`` replace card params."""
    return _construct(registry(kind).get(name), overrides)


def make_codec(name: str, *, weights_dir: str | None = None, **overrides: Any) -> Any:
    """Build a codec from its card; ``overrides`` replace card params. ``weights_dir``
    (``--weights-dir``) goes to adapters whose constructor takes a ``weights_dir``."""
    entry = registry("codec").get(name)
    if weights_dir is not None and "weights_dir" in inspect.signature(entry.load()).parameters:
        overrides = {"weights_dir": weights_dir, **overrides}
    return _construct(entry, overrides)


def codec_class(name: str) -> type:
    """The adapter class of the codec card ``name`` (not constructed)."""
    return registry("codec").get(name).load()


def make_dataset(name: str, **overrides: Any) -> Any:
    """Build a dataset from its card; ``overrides`` (e.g. root) replace card params."""
    return make("dataset", name, **overrides)


def make_metric(name: str, **overrides: Any) -> Any:
    """Build a metric from its card (``metrics/<name>.yaml``); ``overrides`` replace card params."""
    return make("metric", name, **overrides)


def codec_rates(codec: Any) -> list[Any]:
    """The card's rate points if it lists any, else the adapter's defaults."""
    card_rates = (getattr(codec, "card", None) or {}).get("rates")
    values = card_rates if card_rates else list(codec.rate_knob.values)
    for v in values:
        codec.rate_knob.check(v)
    return list(values)
