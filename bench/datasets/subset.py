"""A fixed subset of another dataset's images (e.g. the images a training callback evaluates)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .base import Dataset, Sample


class Subset(Dataset):
    """The images ``ids`` of ``dataset``, in the order given; everything else is ``dataset``'s."""

    def __init__(self, dataset: Dataset, ids: Sequence[str]) -> None:
        known = set(dataset.ids())
        unknown = [i for i in ids if i not in known]
        if unknown or not ids:
            raise ConfigError(f"dataset {dataset.name!r} has no image {', '.join(map(repr, unknown[:3]))}"
                              if unknown else "an empty image subset",
                              f"pick ids among {', '.join(list(known)[:5])} …")
        self.dataset = dataset
        self.name = dataset.name
        self.class_set = dataset.class_set
        self._ids = list(dict.fromkeys(ids))

    def __getattr__(self, attr: str) -> Any:  # the wrapped dataset's own settings (root, resolution …)
        if attr == "dataset":
            raise AttributeError(attr)
        return getattr(self.dataset, attr)

    def ids(self) -> list[str]:
        return list(self._ids)

    def load(self, image_id: str) -> Sample:
        return self.dataset.load(image_id)

    def files(self, image_id: str) -> list[Path]:
        return self.dataset.files(image_id)

    def protocol(self) -> dict[str, Any]:
        return self.dataset.protocol()
