"""``bench doctor``: one screen of what is found and what is missing."""

from __future__ import annotations

from typing import Any

from bench.errors import BenchError
from bench.registry import catalog


def _line(ok: bool, name: str, detail: str) -> str:
    return f"  [{'ok' if ok else '--'}] {name:14s} {detail}"


def _component(kind: str, name: str, options: dict[str, Any]) -> str:
    try:
        if kind == "codec":
            obj = catalog.make_codec(name, weights_dir=options.get("weights_dir"))
        elif kind == "segmenter":
            from bench.segmenters import make_segmenter

            obj = make_segmenter(name, weights_dir=options.get("weights_dir"))
        else:
            obj = catalog.make_metric(name, **options)
        reqs = obj.requirements()
    except ImportError as err:
        return _line(False, name, f"python package missing: {err.name} (pip install it)")
    except BenchError as err:
        return _line(False, name, err.problem)
    missing = [r for r in reqs if not r.found]
    if missing:
        return _line(False, name, "; ".join(f"{r.kind} {r.name} missing: {r.detail}" for r in missing))
    found = ", ".join(f"{r.name}={r.detail}" for r in reqs) or "no external requirement"
    return _line(True, name, found)


def _dataset(name: str) -> str:
    try:
        ds = catalog.make_dataset(name)
        n = len(ds.ids())
        return _line(n > 0, name, f"{n} images" + (f" under {ds.root}" if getattr(ds, "root", None) else ""))
    except BenchError as err:
        return _line(False, name, err.problem)
    except ImportError as err:
        return _line(False, name, f"python package missing: {err.name}")


def report(weights_dir: str | None = None) -> str:
    """The doctor's screen as text."""
    options = {"weights_dir": weights_dir}
    out = ["codecs:"]
    out += [_component("codec", n, options) for n in catalog.registry("codec").names()]
    out.append("metrics:")
    out += [_component("metric", n, options) for n in catalog.registry("metric").names()]
    out.append("segmenters (cards with published weights):")
    out += [_component("segmenter", e.name, options) for e in catalog.registry("segmenter") if e.card.get("weights")]
    out.append("datasets:")
    out += [_dataset(n) for n in catalog.registry("dataset").names()]
    return "\n".join(out)
