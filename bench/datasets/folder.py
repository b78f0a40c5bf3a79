"""Any directory of images, without labels (also the Kodak card)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from bench.modes import Fit

from ..errors import ConfigError
from .base import Dataset, Sample, require_dir
from .protocol import Resolution, read_image_file, resolve_root, source_note

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class FolderDataset(Dataset):
    """Every image file under ``root`` (sorted by relative path), no labels.

    Ids are the relative paths without suffix (``kodim01``, ``sub/img``); when two files
    differ only by suffix, both keep their suffix. Files are only opened by :meth:`load`.
    """

    name = "folder"
    class_set = None

    def __init__(self, root: str | Path | None = None, *, recursive: bool = False,
                 height: Any = None, width: Any = None, fit: Fit = "resize",
                 image_resample: str = "bilinear", label_resample: str = "nearest",
                 root_env: str | None = None, default_root: str | Path | None = None,
                 download: str = "any directory of images") -> None:
        # built from a card, self.name is already the card's name (e.g. kodak: bench.registry.catalog)
        self.root_env = root_env
        self.download = download  # where to get the images (a card's own text, e.g. Kodak's URL)
        self.root = resolve_root(root, root_env, default_root, fetched=self.name)
        self.recursive = bool(recursive)
        self.resolution = Resolution.from_params(self.name, height, width, fit, image_resample, label_resample)
        self._paths: dict[str, Path] | None = None

    def _layout(self) -> str:
        env = f" (or set ${self.root_env})" if self.root_env else ""
        deep = "**/" if self.recursive else ""
        return f"  ROOT{env}/{deep}*.{{{','.join(s[1:] for s in IMAGE_SUFFIXES)}}}"

    def _index(self) -> dict[str, Path]:
        if self._paths is None:
            root = require_dir(self.root, self.name, self._layout(), self.download)
            pattern = root.rglob("*") if self.recursive else root.glob("*")
            files = sorted(p for p in pattern if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(root).parts))
            rel = [p.relative_to(root).as_posix() for p in files]
            stems = [r[: -len(Path(r).suffix)] for r in rel]
            dup = {s for s, n in Counter(stems).items() if n > 1}
            self._paths = {(r if s in dup else s): p for r, s, p in zip(rel, stems, files)}
        return self._paths

    def ids(self) -> list[str]:
        return list(self._index())

    def _path(self, image_id: str) -> Path:
        try:
            return self._index()[image_id]
        except KeyError:
            raise ConfigError(f"{self.name}: no image with id {image_id!r} under {self.root}",
                              "use an id from ids()") from None

    def files(self, image_id: str) -> list[Path]:
        return [self._path(image_id)]

    def load(self, image_id: str) -> Sample:
        path = self._path(image_id)
        info: dict[str, Any] = {}
        raw = read_image_file(path, self.name, info)
        return Sample(image_id, self.resolution.image(raw), None,
                      {"path": str(path), "native_size": [int(raw.shape[0]), int(raw.shape[1])],
                       **source_note(info)})

    def protocol(self) -> dict[str, Any]:
        return {"dataset": self.name, "class_set": None, "labels": None, "recursive": self.recursive,
                **self.resolution.protocol()}
