"""What a codec instance is, for caching: an instance that declares no identity is scoped to one
call (:class:`CallScoped`, never cached across calls, with one :class:`UncachedCodecWarning`
per name); one holding ``nn.Module`` s is keyed by their state (:class:`StateKeyed`); a live
module becomes a frozen :class:`~bench.codecs.module.ModuleCodec`. Used by :mod:`bench.api`."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Sequence
from typing import Any

from .codecs.base import Codec

CodecLike = str | Codec | Any  # Any: a torch.nn.Module (see bench.codecs.module)


class UncachedCodecWarning(UserWarning):
    """A codec instance declares no identity, so its results are not cached across calls."""


_WARNED: set[str] = set()


def declares_identity(codec: Codec) -> bool:
    """True when ``codec`` says what it is: a ``version`` of its own class (not the base
    class's ``"0"``) or a ``checkpoint_sha256`` in its ``describe()``."""
    from bench.analysis.compare import checkpoint_of

    if type(codec).version != Codec.version:
        return True
    return bool(checkpoint_of(codec.describe()))


class CallScoped(Codec):
    """An undeclared codec instance for one call: describes itself with a fresh nonce, so
    that neither the run id nor any cache key can match another call's."""

    def __init__(self, inner: Codec) -> None:  # noqa: D107 (Codec.__init__ would refuse params)
        self.inner = inner
        self.name = inner.name
        self.version = inner.version
        self.rate_knob = inner.rate_knob
        self.needs_semantics = inner.needs_semantics
        self.parallel_safe = inner.parallel_safe
        self.card = getattr(inner, "card", None)
        self.nonce = uuid.uuid4().hex[:12]

    def requirements(self) -> list[Any]:
        return self.inner.requirements()

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "identity": "undeclared: not cached across calls", "call": self.nonce}

    def rate_label(self, rate: Any) -> str:
        return self.inner.rate_label(rate)

    def encode(self, image: Any, rate: Any, *, semantics: Any = None) -> Any:
        return self.inner.encode(image, rate, semantics=semantics)

    def decode(self, parts: Any) -> Any:
        return self.inner.decode(parts)


class StateKeyed(CallScoped):
    """A codec instance that holds ``nn.Module`` s: its identity carries the sha256 of their
    parameters and buffers as they are at this call, so a changed model is never served
    another state's cached results (a ``version`` alone does not say what the weights are)."""

    def __init__(self, inner: Codec, state: str) -> None:  # noqa: D107
        super().__init__(inner)
        self.state = state

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "module_state_sha256": self.state}


def live(c: Any) -> Any:
    """A module becomes a :class:`~bench.codecs.module.ModuleCodec`; a ModuleCodec is frozen
    (deep copy, state hash); another codec instance holding modules is keyed by their state."""
    from bench.codecs.module import ModuleCodec, from_module, is_module, modules_of, state_sha256

    if is_module(c):
        c = from_module(c)
    if isinstance(c, ModuleCodec):
        return c.frozen()
    if isinstance(c, Codec) and not isinstance(c, CallScoped) and declares_identity(c):
        modules = modules_of(c)
        if modules:
            return StateKeyed(c, state_sha256(*modules))
    return c


def scoped(codecs: Sequence[CodecLike]) -> tuple[list[CodecLike], bool]:
    """Codecs with undeclared instances wrapped (modules keyed by their state); True when
    the call must skip the cache."""
    out: list[CodecLike] = []
    uncached = False
    for c in map(live, codecs):
        if isinstance(c, Codec) and not isinstance(c, StateKeyed) and not declares_identity(c):
            if c.name not in _WARNED:
                _WARNED.add(c.name)
                warnings.warn(f"codec {c.name!r} ({type(c).__name__}) declares no identity (no version of its own, "
                              "no checkpoint_sha256): its results are not cached across calls; set a class "
                              "attribute `version` (and describe() its weights) to reuse them",
                              UncachedCodecWarning, stacklevel=4)  # the caller of evaluate()
            out.append(CallScoped(c))
            uncached = True
        else:
            out.append(c)
    return out, uncached
