"""The fetch registry: every weights file and dataset ``bench fetch`` can download, as data.

Entries come from ``registry.yaml`` beside this module, plus CompressAI's zoo read from
``compressai.zoo.image.model_urls`` at run time (one entry per architecture, metric and quality,
named ``compressai-<arch>-<metric>-<q>``; the file names carry a sha256 prefix).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UnknownNameError

REGISTRY_FILE = Path(__file__).with_name("registry.yaml")
GROUPS = ("weights", "datasets", "all")


# -- settings ---------------------------------------------------------------------------
def data_dir() -> Path:
    """The cache folder: ``$BENCH_DATA_DIR``, else the user cache folder (pooch.os_cache("bench"))."""
    env = os.environ.get("BENCH_DATA_DIR")
    if env:
        return Path(os.path.expandvars(env)).expanduser()
    import pooch

    return Path(pooch.os_cache("bench"))


def mirror() -> str | None:
    """The mirror base URL (``$BENCH_MIRROR``), or None."""
    return os.environ.get("BENCH_MIRROR") or None


def offline() -> bool:
    """True when ``$BENCH_OFFLINE`` is set to 1/true/yes: nothing is downloaded."""
    return os.environ.get("BENCH_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


# -- entries ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FileSpec:
    """One file of an entry. ``sha256``: full (64 hex), a published prefix, or None (recorded
    at the first fetch). ``unpack``: ``{"into": folder, "members": [prefixes]}`` for archives."""

    file: str
    urls: tuple[str, ...] = ()
    gdrive: str | None = None
    cityscapes: str | None = None
    sha256: str | None = None
    size: int | None = None
    approx_size: str | None = None
    unpack: dict[str, Any] | None = None

    @property
    def hash_kind(self) -> str:
        """``sha256`` (full hash), ``prefix`` (published prefix) or ``recorded`` (none published)."""
        if not self.sha256:
            return "recorded"
        return "sha256" if len(self.sha256) == 64 else "prefix"


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # weights | dataset
    target: str  # folder under data_dir()
    files: tuple[FileSpec, ...]
    group: str | None = None
    licence: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def folder(self) -> Path:
        return data_dir() / self.target

    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(s for s in sizes if s)

    def size_text(self) -> str:
        total = self.size()
        if total is not None:
            return human(total)
        approx = [f.size or _parse_size(f.approx_size) for f in self.files]
        if None in approx:
            return "?"
        return "~" + human(sum(approx)).replace(".0", "")  # type: ignore[arg-type]  # approx holds only the known sizes (ints)

    def hash_text(self) -> str:
        kinds = {f.hash_kind for f in self.files}
        return "/".join(sorted(kinds))


def human(n: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}G"


def _parse_size(text: str | None) -> float | None:
    """``"233M"`` → bytes (binary units), None when absent."""
    if not text:
        return None
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def _file(d: dict[str, Any]) -> FileSpec:
    return FileSpec(file=d["file"], urls=tuple(d.get("urls") or ()), gdrive=d.get("gdrive"),
                    cityscapes=d.get("cityscapes"), sha256=(d.get("sha256") or None),
                    size=d.get("size"), approx_size=d.get("approx_size"), unpack=d.get("unpack"))


@functools.lru_cache(maxsize=1)
def _static() -> tuple[Entry, ...]:
    import yaml

    data = yaml.safe_load(REGISTRY_FILE.read_text())
    return tuple(Entry(name=e["name"], kind=e["kind"], target=e["target"], group=e.get("group"),
                       licence=e.get("licence", ""), note=" ".join(str(e.get("note", "")).split()),
                       files=tuple(_file(f) for f in e["files"])) for e in data["entries"])


def _zoo_urls() -> dict[str, Any]:
    """``compressai.zoo.image.model_urls``, read from the installed file without importing
    compressai (its import pulls in torch and its datasets: seconds); {} when not installed."""
    import ast
    import importlib.util

    try:
        found = importlib.util.find_spec("compressai")
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin:
        return {}
    try:
        tree = ast.parse((Path(found.origin).parent / "zoo" / "image.py").read_text())
        names: dict[str, Any] = {}
        for node in tree.body:  # only the two table assignments: root_url = "…"; model_urls = {…}
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) in ("root_url", "model_urls")
                                                    for t in node.targets):
                code = compile(ast.Module([node], []), "compressai/zoo/image.py", "exec")
                exec(code, {}, names)  # noqa: S102 - two literal assignments of the installed package
        return names["model_urls"]
    except Exception:  # noqa: BLE001 - another layout: import it after all
        from compressai.zoo.image import model_urls

        return model_urls


@functools.lru_cache(maxsize=1)
def _compressai() -> tuple[Entry, ...]:
    from bench.runtime.hashing import hash_in_name

    model_urls = _zoo_urls()

    out = []
    for arch, metrics in model_urls.items():
        for metric, qualities in metrics.items():
            for q, url in qualities.items():
                fname = url.rsplit("/", 1)[1]
                out.append(Entry(name=f"compressai-{arch}-{metric}-{q}", kind="weights", target="weights",
                                 group="compressai", licence="BSD-3-Clause-Clear (InterDigital CompressAI)",
                                 files=(FileSpec(file=fname, urls=(url,), sha256=hash_in_name(fname)),)))
    return tuple(out)


def entries() -> list[Entry]:
    """Every entry, in registry order (CompressAI's zoo last)."""
    return [*_static(), *_compressai()]


def by_name() -> dict[str, Entry]:
    return {e.name: e for e in entries()}


def for_file(filename: str) -> tuple[Entry, FileSpec] | None:
    """The entry and file spec whose registry file name is ``filename``, or None."""
    for e in entries():
        for f in e.files:
            if f.file == filename:
                return e, f
    return None


def select(names: list[str]) -> list[Entry]:
    """Entries for names: entry names, group names, ``weights``, ``datasets`` or ``all``."""
    table = by_name()
    out: list[Entry] = []
    for name in names:
        if name == "all":
            hit = list(table.values())
        elif name in ("weights", "datasets"):
            hit = [e for e in table.values() if e.kind == name.rstrip("s")]
        elif name in table:
            hit = [table[name]]
        else:  # a group, or a name prefix ending before a "-": compressai-mbt2018-mse
            hit = [e for e in table.values() if e.group == name or e.name.startswith(name + "-")]
        if not hit:
            import difflib

            close = difflib.get_close_matches(name, [*table, *{e.group for e in table.values() if e.group}], 3)
            raise UnknownNameError(
                f"bench fetch: {name!r} is not a registry name"
                + (f" (did you mean {', '.join(close)}?)" if close else ""),
                "see `bench fetch --list` for the names (or weights, datasets, all)")
        out += [e for e in hit if e not in out]
    return out


def fetch_command(filename: str) -> str | None:
    """``bench fetch NAME`` for the entry holding ``filename``, or None."""
    found = for_file(filename)
    return f"bench fetch {found[0].name}" if found else None


def command_for(names: list[str]) -> str:
    """One ``bench fetch`` command for entry names: the names, or their common ``-`` prefix
    (``compressai-mbt2018-mse``) when there are more than two."""
    names = sorted(set(names))
    if len(names) <= 2:
        return "bench fetch " + " ".join(names)
    parts = [n.split("-") for n in names]
    common: list[str] = []
    for group in zip(*parts):
        if len(set(group)) > 1:
            break
        common.append(group[0])
    return "bench fetch " + ("-".join(common) if common else " ".join(names))


def names_in(text: str) -> list[str]:
    """Registry entries whose file name occurs in ``text`` (a requirement's message)."""
    return [e.name for e in entries() for f in e.files if f.file in text]
