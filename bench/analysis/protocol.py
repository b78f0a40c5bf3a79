"""Protocol checks: what makes two runs incomparable (used by compare, paired and figures)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.errors import ProtocolMismatchError


def _flat_diff(a: Any, b: Any, path: str) -> list[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out += _flat_diff(a.get(key), b.get(key), f"{path}.{key}")
        return out
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def protocol_differences(run_a: Mapping[str, Any], run_b: Mapping[str, Any],
                         metrics: Sequence[str] = ()) -> list[str]:
    """What makes two runs incomparable: dataset protocol (resolution, class set, split…),
    dataset content (hash of ids, files and protocol) and the ``describe()`` of each metric
    in ``metrics`` (segmenter, weights hashes, references, random weights…)."""
    ma, mb = run_a["meta"], run_b["meta"]
    da, db = ma.get("dataset") or {}, mb.get("dataset") or {}
    diffs = _flat_diff(da.get("protocol"), db.get("protocol"), "dataset.protocol")
    # the named protocol preset (bench.datasets.presets); runs from before presets were "card"
    card = {"name": "card"}
    pa, pb = ma.get("protocol") or card, mb.get("protocol") or card
    if pa.get("name") != pb.get("name"):
        diffs.append(f"protocol: {pa.get('name')!r} vs {pb.get('name')!r}")
    elif pa.get("name") != "card":
        keep = ("dataset", "sender_labels", "sender_segmenter", "miou_average", "miou_average_used")
        diffs += _flat_diff({k: pa.get(k) for k in keep}, {k: pb.get(k) for k in keep}, "protocol")
    if da.get("content_hash") != db.get("content_hash"):
        diffs.append(f"dataset.content_hash: {str(da.get('content_hash'))[:12]}… ({da.get('n_images')} images) vs "
                     f"{str(db.get('content_hash'))[:12]}… ({db.get('n_images')} images) — different images or files")
    for name in metrics:
        a, b = (ma.get("metrics") or {}).get(name), (mb.get("metrics") or {}).get(name)
        if a is None or b is None:
            continue  # absent on one side: the metric is simply not compared
        diffs += _flat_diff(a, b, f"metric {name}")
    return diffs


def check_same_protocol(run_a: Mapping[str, Any], run_b: Mapping[str, Any], metrics: Sequence[str] = ()) -> None:
    """Raise :class:`ProtocolMismatchError` listing every difference, if any."""
    diffs = protocol_differences(run_a, run_b, metrics)
    if diffs:
        raise ProtocolMismatchError(
            f"runs {run_a['run_id']} and {run_b['run_id']} were made under different protocols and are not "
            "compared:\n    " + "\n    ".join(diffs),
            "re-run one of them with the other's dataset, options and metric settings "
            "(`bench runs` lists them; metric settings that differ can be left out with --metric)",
        )
