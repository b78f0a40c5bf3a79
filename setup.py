"""Build hook: ship the YAML cards as package data.

The cards stay in the top-level ``codecs/``, ``datasets/``, ``metrics/`` and ``segmenters/``
folders of the checkout (where a checkout's loader reads them); building a wheel copies them
into ``bench/_cards/<folder>/`` inside the package, where an installed (non-editable) bench
finds them (:data:`bench.registry.cards.PACKAGED_CARDS`). Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CARD_FOLDERS = ("codecs", "datasets", "metrics", "segmenters")


class BuildPyWithCards(build_py):
    """``build_py`` that also copies ``<folder>/*.yaml`` to ``bench/_cards/<folder>/``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's folders directly
            return
        for folder in CARD_FOLDERS:
            source = ROOT / folder
            if not source.is_dir():
                continue
            target = Path(self.build_lib) / "bench" / "_cards" / folder
            target.mkdir(parents=True, exist_ok=True)
            for card in sorted(source.glob("*.y*ml")):
                shutil.copy2(card, target / card.name)


setup(cmdclass={"build_py": BuildPyWithCards})
