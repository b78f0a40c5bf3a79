"""The kinds of component the registry knows: where their cards live, what they must subclass.

One table for every kind (codec, dataset, metric, segmenter). A kind names

* ``folder``: the card folder (``codecs/``, ``datasets/``, ``metrics/``, ``segmenters/`` at the
  project root, in the wheel under ``bench/_cards/``, and in every ``BENCH_CARD_PATH`` root);
* ``base``: the ``module:Class`` every entry of this kind must subclass. A card's ``entry`` is
  imported and checked against it *before anything is called*, so a card can name only a
  component class (never ``subprocess:call`` or ``os:system``);
* ``group``: the ``importlib.metadata`` entry-point group third-party packages register
  under, e.g. in their pyproject.toml::

      [project.entry-points."semcodec_bench.codecs"]
      mycodec = "my_package.codec:MyCodec"

A new kind is one :func:`register_kind` call (its base class and card folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

KindName = Literal["codec", "dataset", "metric", "segmenter"]


@dataclass(frozen=True)
class Kind:
    """A kind of component: ``name`` ("codec"), card ``folder`` ("codecs"), ``base``
    ("bench.codecs.base:Codec") and entry-point ``group`` ("semcodec_bench.codecs")."""

    name: str
    folder: str
    base: str
    group: str


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> None:
    """Add (or replace) a kind of component."""
    KINDS[kind.name] = kind


for _name, _base in (("codec", "bench.codecs.base:Codec"), ("dataset", "bench.datasets.base:Dataset"),
                     ("metric", "bench.metrics.base:Metric"), ("segmenter", "bench.segmenters.base:Segmenter")):
    register_kind(Kind(_name, f"{_name}s", _base, f"semcodec_bench.{_name}s"))


def get_kind(name: str) -> Kind:
    """The kind called ``name``; ValueError for an unknown one (a programming error)."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {name!r}") from None
