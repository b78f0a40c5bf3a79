"""YAML cards: what a codec or dataset is (entry point, rate points, paths).

Cards live in ``codecs/*.yaml``, ``datasets/*.yaml`` and ``segmenters/*.yaml`` at the
project root, plus any directory listed in ``BENCH_CARD_PATH`` (``os.pathsep``-separated;
each may hold ``codecs/``, ``datasets/`` and ``segmenters/`` sub-folders). A card is data, never Python::

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

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CARD_DIRS = {"codec": "codecs", "dataset": "datasets", "segmenter": "segmenters"}


def card_roots() -> list[Path]:
    """Directories searched for cards, highest priority first."""
    roots = [Path(p) for p in os.environ.get("BENCH_CARD_PATH", "").split(os.pathsep) if p]
    roots.append(PROJECT_ROOT)
    return roots


def read_card(path: Path, kind: str) -> Entry:
    """Parse one card file into a registry entry."""
    try:
        card = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"card {path} is not valid YAML: {err}", "fix the YAML syntax") from None
    if not isinstance(card, dict):
        raise ConfigError(f"card {path} must be a mapping", "see bench/cards.py for the format")
    for key in ("name", "entry"):
        if not isinstance(card.get(key), str):
            raise ConfigError(f"card {path} has no string {key!r}", f"add '{key}: ...' to the card")
    return Entry(name=card["name"], kind=kind, target=card["entry"], card=card, source=str(path))


def discover(kind: str) -> list[Entry]:
    """All cards of ``kind``; a name in an earlier root hides the same name in later ones."""
    seen: dict[str, Entry] = {}
    for root in card_roots():
        folder = root / CARD_DIRS[kind]
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
