"""Labels shown for codecs: ``name@tag`` and the recorded checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def checkpoint_of(describe: Mapping[str, Any]) -> str | None:
    """The checkpoint sha256 a codec recorded (``params.checkpoint_sha256``), if any."""
    params = describe.get("params") or {}
    sha = params.get("checkpoint_sha256") if isinstance(params, Mapping) else None
    return sha or describe.get("checkpoint_sha256")


def codec_label(name: str, tag: str | None = None) -> str:
    """``name@tag`` for a tagged run (e.g. ``sqgan@ckpt-ep40``), else ``name``."""
    return f"{name}@{tag}" if tag else name


def run_codec_labels(run: Mapping[str, Any]) -> dict[str, str]:
    """codec name → shown label (``name@tag``) plus ``[ckpt <sha8>]`` when a checkpoint is recorded."""
    meta = run["meta"]
    out = {}
    for name, desc in (meta.get("codecs") or {}).items():
        label = codec_label(name, meta.get("tag"))
        sha = checkpoint_of(desc) if isinstance(desc, Mapping) else None
        out[name] = label + (f"[ckpt {sha[:8]}]" if sha else "")
    return out
