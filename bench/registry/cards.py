"""YAML cards: what a codec, dataset, metric or segmenter is (entry class, rate points, paths).

Cards live in ``codecs/``, ``datasets/``, ``metrics/`` (and ``segmenters/``) at the project
root of a checkout; a wheel ships the same files as package data under ``bench/_cards/``
(copied there by the build hook in setup.py). Any directory listed in ``BENCH_CARD_PATH``
(``os.pathsep``-separated, each with those sub-folders) comes first. A card is data, never
Python; its ``entry`` must name a subclass of the kind's base class
(:mod:`bench.registry.kinds`)::

    name: jpeg2000
    entry: bench.codecs.pillow_codecs:Jpeg2000Codec
    description: ...
    rates: [0.05, 0.1, 0.2]     # optional: overrides the codec's default rate points
    params: {}                  # keyword arguments of the adapter's constructor
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from bench.errors import ConfigError
from bench.registry.core import Entry
from bench.registry.kinds import KINDS, get_kind

#: The checkout's root (its top-level card folders); in an installed wheel, site-packages.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Where a wheel keeps the cards (package data; absent in a checkout).
PACKAGED_CARDS = Path(__file__).resolve().parents[1] / "_cards"
CARD_DIRS = {name: kind.folder for name, kind in KINDS.items()}


def _is_checkout(root: Path) -> bool:
    """True for the project's own source tree (not e.g. a site-packages with a ``datasets`` package)."""
    return (root / "pyproject.toml").is_file() and (root / "bench" / "__init__.py").is_file()


def card_roots() -> list[Path]:
    """Directories searched for cards, highest priority first: ``BENCH_CARD_PATH``, then the
    checkout's top-level folders, then the cards shipped in the wheel."""
    roots = [Path(p) for p in os.environ.get("BENCH_CARD_PATH", "").split(os.pathsep) if p]
    if _is_checkout(PROJECT_ROOT):
        roots.append(PROJECT_ROOT)
    if PACKAGED_CARDS.is_dir():
        roots.append(PACKAGED_CARDS)
    return roots


def read_card(path: Path, kind: str) -> Entry:
    """Parse one card file into a registry entry."""
    try:
        card = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"card {path} is not valid YAML: {err}", "fix the YAML syntax") from None
    if not isinstance(card, dict):
        raise ConfigError(f"card {path} must be a mapping", "see bench/registry/cards.py for the format")
    for key in ("name", "entry"):
        if not isinstance(card.get(key), str):
            raise ConfigError(f"card {path} has no string {key!r}", f"add '{key}: ...' to the card")
    return Entry(name=card["name"], kind=kind, target=card["entry"], card=card, source=str(path))


def discover(kind: str) -> list[Entry]:
    """All cards of ``kind``; a name in an earlier root hides the same name in later ones."""
    seen: dict[str, Entry] = {}
    for root in card_roots():
        folder = root / get_kind(kind).folder
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.y*ml")):
            entry = read_card(path, kind)
            seen.setdefault(entry.name, entry)
    return list(seen.values())


def card_params(entry: Entry) -> dict[str, Any]:
    params = entry.card.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"'params' of {entry.source} must be a mapping", "write params: {key: value}")
    return dict(params)
