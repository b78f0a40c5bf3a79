"""File hashes (sha256), the torch.hub convention of a sha256 prefix in a file name, and the hash
of source folders: a leaf module shared by the weights resolver, the fetch registry and the
stores of derived values (summaries, figures)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")

_HASHES: dict[tuple[str, int, int], str] = {}


def hash_in_name(path: Path | str) -> str | None:
    """The sha256 prefix a torch.hub-style file name carries (≥ 8 hex digits), or None."""
    found = HASH_IN_NAME.findall(Path(path).name)
    return found[-1] if found else None


def sha256_file(path: Path | str) -> str:
    """sha256 hex digest of a file, memoised on (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def sha256_path(path: Path | str) -> str:
    """sha256 of a file, or of a folder of files (split checkpoints): the digest of one line
    ``<relative posix path>:<sha256>`` per file below it, in name order."""
    p = Path(path)
    if not p.is_dir():
        return sha256_file(p)
    h = hashlib.sha256()
    for f in sorted((f for f in p.rglob("*") if f.is_file()), key=lambda f: f.relative_to(p).as_posix()):
        h.update(f"{f.relative_to(p).as_posix()}:{sha256_file(f)}\n".encode())
    return h.hexdigest()


def source_hash(*folders: Path) -> str:
    """sha256 over the ``*.py`` files below ``folders`` (names and bytes, in sorted order): a
    key part that changes when the code that computed a stored value changes."""
    h = hashlib.sha256()
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.py")):
            h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
