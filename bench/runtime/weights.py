"""Resolve pretrained weights: local files first, then the fetch registry's download.

Search order for a :class:`WeightSpec`: an explicit path (card or CLI), the spec's env
variable, then ``--weights-dir`` / ``$BENCH_WEIGHTS_DIR`` joined with the spec's file name,
``$BENCH_DATA_DIR/weights`` (what ``bench fetch`` downloads) and the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``); then
``--weights-dir`` / ``$BENCH_WEIGHTS_DIR`` searched recursively (first match by file name, in
path order). When nothing is found and the file is in the fetch registry, :func:`resolve`
downloads it (hash-checked, one line on stderr) unless offline (``BENCH_OFFLINE=1``). A found
file is checked against the known sha256 (full or prefix) and loaded with ``weights_only=True``.

Specs with ``hashed_name=True`` follow torch.hub's naming (CompressAI's zoo uses it):
``<stem>-<first hex digits of the sha256>.<ext>``. Such a file is checked against the
prefix in its own name, and a file of the same stem with another prefix (a re-trained
model saved under the zoo's naming) is found too, after the exact name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import WeightsError
from bench.runtime.hashing import HASH_IN_NAME, hash_in_name, sha256_file, sha256_path  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class WeightSpec:
    """A weights file a component needs.

    ``sha256``: the known hash (or a prefix of it, ≥ 8 hex digits); None when unknown.
    ``env``: an environment variable that may hold the file's path.
    ``source``: where the file is normally obtained (shown when it is missing).
    """

    name: str
    filename: str
    sha256: str | None = None
    env: str | None = None
    source: str = ""
    hashed_name: bool = False  # torch.hub naming: <stem>-<sha256 prefix>.<ext>, see hashed_variants


#: torch.hub's HASH_REGEX (also CompressAI's zoo): the hex after the last "-" before a ".".




def check_name_hash(path: Path | str, what: str) -> str:
    """sha256 of ``path``; raises :class:`WeightsError` when the hash prefix in its name
    (torch.hub convention) does not match its content. Names without one pass."""
    digest = sha256_file(path)
    prefix = hash_in_name(path)
    if prefix is not None and not digest.startswith(prefix):
        raise WeightsError(
            f"{what} {path}: the file name says sha256 {prefix}…, the content has {digest}",
            "the file is truncated, corrupt or misnamed: fetch it again, or name a re-trained file "
            f"<name>-{digest[:8]}.<ext>",
        )
    return digest


def hashed_variants(spec: WeightSpec, weights_dir: Path | str | None = None) -> list[Path]:
    """Files in the weights dirs named like ``spec.filename`` but with another hash prefix
    (``<stem>-<hex>.<ext>``), sorted by name; empty unless ``spec.hashed_name``."""
    prefix = hash_in_name(spec.filename)
    if not spec.hashed_name or prefix is None:
        return []
    stem, _, ext = spec.filename.rpartition(f"-{prefix}.")
    pattern = re.compile(re.escape(stem) + r"-[a-f0-9]{8,64}\." + re.escape(ext))
    out: list[Path] = []
    for d in weights_dirs(weights_dir):
        if d.is_dir():
            out += sorted(p for p in d.glob(f"{stem}-*.{ext}") if pattern.fullmatch(p.name) and p.is_file())
    return out






def user_dirs(extra: Path | str | None = None) -> list[Path]:
    """``--weights-dir`` and ``$BENCH_WEIGHTS_DIR`` (searched recursively by :func:`find`)."""
    dirs = [Path(extra).expanduser()] if extra else []
    if os.environ.get("BENCH_WEIGHTS_DIR"):
        dirs += [Path(p).expanduser() for p in os.environ["BENCH_WEIGHTS_DIR"].split(os.pathsep) if p]
    return dirs


def weights_dirs(extra: Path | str | None = None) -> list[Path]:
    from bench.runtime.fetch import weights_dir as fetched

    dirs = [*user_dirs(extra), fetched()]
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    dirs.append(torch_home / "hub" / "checkpoints")
    return dirs


def candidates(spec: WeightSpec, path: Path | str | None = None, weights_dir: Path | str | None = None) -> list[Path]:
    out: list[Path] = []
    if path:
        out.append(Path(path).expanduser())
    if spec.env and os.environ.get(spec.env):
        out.append(Path(os.environ[spec.env]).expanduser())
    out += [d / spec.filename for d in weights_dirs(weights_dir)]
    return out


def find(spec: WeightSpec, path: Path | str | None = None, weights_dir: Path | str | None = None) -> Path | None:
    """The first existing candidate path, else the first :func:`hashed_variants` file,
    or None (no hash check)."""
    for cand in candidates(spec, path, weights_dir):
        if cand.is_file():
            return cand
    if not path:
        nested = find_nested(spec.filename, weights_dir)
        if nested is not None:
            return nested
    variants = [] if path else hashed_variants(spec, weights_dir)
    return variants[0] if variants else None


def find_nested(filename: str, weights_dir: Path | str | None = None) -> Path | None:
    """The first file named ``filename`` below ``--weights-dir`` / ``$BENCH_WEIGHTS_DIR`` (any
    depth, path order; links to folders are not followed), or None."""
    if not filename or "/" in filename:
        return None
    for d in user_dirs(weights_dir):
        if d.is_dir():
            hits = sorted(p for p in d.rglob(filename) if p.is_file())
            if hits:
                return hits[0]
    return None


def missing_message(spec: WeightSpec, path: Path | str | None = None, weights_dir: Path | str | None = None) -> str:
    looked = ", ".join(str(c) for c in candidates(spec, path, weights_dir))
    below = ", ".join(str(d) for d in user_dirs(weights_dir) if not path)
    return (f"{spec.name} weights {spec.filename} not found (looked in: {looked}"
            + (f"; and below {below}" if below else "") + ")"
            + (f"; expected sha256 {spec.sha256}" if spec.sha256 else ""))


def resolve(spec: WeightSpec, path: Path | str | None = None, weights_dir: Path | str | None = None,
            *, check_hash: bool = True, fetch: bool = True) -> Path:
    """The verified local file for ``spec``; raises :class:`WeightsError` with the fix.

    ``fetch``: when no local file is found (and no explicit ``path`` was given), download the
    registry's file of that name into ``$BENCH_DATA_DIR/weights`` unless offline."""
    found = find(spec, path, weights_dir)
    command = None
    bare = not path or Path(path).name == str(path)  # no path, or a bare registry file name
    if found is None and bare:
        from bench.runtime import fetch as F

        name = Path(path).name if path else spec.filename
        command = F.fetch_command(name)
        if fetch and command and F.auto_fetch_enabled():
            found = F.fetch_weight(name)  # raises FetchError (exit 3) naming the URL
    if found is None:
        fix = (f"run `{command}` (or `bench fetch --from DIR` offline), or " if command else "") + \
            "put the file in --weights-dir / $BENCH_WEIGHTS_DIR"
        if spec.env:
            fix += f", or set ${spec.env} to its path"
        if spec.source:
            fix += f"; it is normally obtained from {spec.source}"
        raise WeightsError(missing_message(spec, path, weights_dir), fix)
    if check_hash and spec.hashed_name:
        check_name_hash(found, f"{spec.name} weights")
    elif check_hash and spec.sha256:
        digest = sha256_file(found)
        if not digest.startswith(spec.sha256.lower()):
            raise WeightsError(
                f"{spec.name} weights {found} have sha256 {digest}, expected {spec.sha256}",
                "the file is corrupt or a different version: replace it with the published file",
            )
    return found


def resolve_or_random(spec: WeightSpec, path: Path | str | None = None, weights_dir: Path | str | None = None,
                      *, allow_random: bool, check_hash: bool = True, fetch: bool = True) -> Path | None:
    """The verified file of ``spec`` (:func:`resolve`), or None when it is missing and
    ``allow_random`` (the caller then builds seeded random weights: smoke tests only). A file
    that is present with a wrong hash always raises, as does a missing one when not allowed.
    Shared by ESPNetv2, the mmseg backend and LPIPS. ``fetch``: download a missing registry
    file (never in random-weights mode, which is for smoke tests)."""
    try:
        return resolve(spec, path, weights_dir, check_hash=check_hash, fetch=fetch and not allow_random)
    except WeightsError:
        if allow_random and find(spec, path, weights_dir) is None:
            return None
        raise


def load_state_dict(path: Path | str) -> dict[str, Any]:
    """``torch.load(path, map_location='cpu', weights_only=True)``, with a clear error."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle with non-tensor objects, truncated file, …
        raise WeightsError(f"cannot load {path} with weights_only=True: {err}",
                           "re-save it as a plain state_dict of tensors") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state_dict", "save model.state_dict()")
    return obj


def check_keys(expected: set[str], got: set[str], what: str, *, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Strict key check: raise listing missing and unexpected keys (ignored prefixes aside)."""
    got = {k for k in got if not k.startswith(ignore_prefixes)}
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if missing or unexpected:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:12]) + (f" … (+{len(keys) - 12})" if len(keys) > 12 else "")

        raise WeightsError(
            f"{what}: state_dict keys do not match the architecture "
            f"({len(missing)} missing: {show(missing) or '-'}; {len(unexpected)} unexpected: {show(unexpected) or '-'})",
            "check that the checkpoint and the model configuration (width, classes) belong together",
        )
