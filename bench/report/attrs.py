"""What a summary's ``DataFrame.attrs`` say about its run (dataset, protocol, codec labels), held
so that they cost nothing to carry: pandas deep-copies ``attrs`` at every operation
(``__finalize__``), which was 0.7 s of a report of 40 rate points for the column metadata alone."""

from __future__ import annotations

from typing import Any


class Shared(dict):
    """A dict held in ``DataFrame.attrs`` that pandas shares instead of deep-copying it at every
    operation (``__finalize__``: 0.7 s of a report of 40 rate points). Read-only by
    convention: code that changes one builds a new dict (as :func:`frame_attrs` callers do)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Shared:
        return self


def frame_attrs(**values: Any) -> dict[str, Any]:
    """``DataFrame.attrs`` with every dict value :class:`Shared` (cheap to carry along)."""
    return {k: Shared(v) if isinstance(v, dict) and not isinstance(v, Shared) else v for k, v in values.items()}


def run_context(run: dict[str, Any]) -> dict[str, Any]:
    """What a figure title names: the run's dataset, its image count and protocol."""
    ds = run["meta"].get("dataset") or {}
    protocol = (run["meta"].get("protocol") or {}).get("name") or "card"
    return {"dataset": str(ds.get("name") or run["config"].get("dataset") or "?"),
            "n_images": ds.get("n_images"), "protocol": str(protocol)}


def visible(text: str) -> str:
    """``text`` on one line with control characters (an ANSI escape, BEL) shown as ``\\xNN``:
    safe in a table, a figure legend and on a terminal."""
    flat = " ".join(str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 else c for c in flat)


def codec_labels(run: dict[str, Any]) -> dict[str, str]:
    """Display labels that codecs gave themselves (e.g. "SPIC (BPG stand-in: heic)"), by name;
    in a run made with ``--tag T`` every codec shows as ``label@T`` (e.g. ``jpeg@T``); control
    characters and line breaks of a tag are made :func:`visible`."""
    out = {}
    tag = visible(run["meta"].get("tag") or "")
    for name, desc in (run["meta"].get("codecs") or {}).items():
        label = desc.get("label") if isinstance(desc, dict) else None
        shown = str(label or name) + (f"@{tag}" if tag else "")
        if shown != name:
            out[name] = shown
    return out
