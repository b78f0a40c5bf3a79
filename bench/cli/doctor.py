"""``bench doctor``: one line per codec, metric and dataset (within 100 columns): found, or
missing with the exact ``bench fetch`` command; the full details under ``--verbose``.
The doctor never downloads anything."""

from __future__ import annotations

import os
import textwrap
from typing import Any

from bench.cli.terminal import WIDTH, fit
from bench.errors import BenchError
from bench.registry import catalog


class Item:
    """One line of the doctor: ``[ok]``/``[--]`` name, a short summary, the full details."""

    def __init__(self, ok: bool, name: str, summary: str, details: list[str] | None = None) -> None:
        self.ok, self.name, self.summary, self.details = ok, name, summary, details or []

    def lines(self, verbose: bool) -> list[str]:
        head = f"  [{'ok' if self.ok else '--'}] {self.name:27s} "
        summary = " ".join(self.summary.split())
        if len(head) + len(summary) > WIDTH and "bench fetch " in summary:  # keep the command whole
            summary = summary[summary.index("bench fetch "):]
        out = [head + fit(summary, WIDTH - len(head))]
        if verbose:
            for d in self.details:
                out += textwrap.wrap(" ".join(d.split()), WIDTH, initial_indent=" " * 8, subsequent_indent=" " * 10,
                                     break_on_hyphens=False, break_long_words=True)
        return out


def _missing_summary(missing: list[Any]) -> str:
    from bench.runtime.fetch.registry import command_for, names_in

    names = [n for r in missing for n in names_in(f"{r.name} {r.detail}")]
    what = ", ".join(sorted({r.kind for r in missing}))
    if names:  # the command first: it must fit the line whole
        return f"missing {what}: {command_for(names)}" if len(what) < 12 else f"missing: {command_for(names)}"
    first = missing[0]
    return f"{first.kind} {first.name} missing: {first.detail}"


def _component(kind: str, name: str, options: dict[str, Any]) -> Item:
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
        return Item(False, name, f"python package missing: {err.name} (pip install it)")
    except BenchError as err:
        return Item(False, name, err.problem, [str(err)])
    missing = [r for r in reqs if not r.found]
    details = [f"{r.kind} {r.name}: {r.detail}" for r in reqs]
    if missing:
        return Item(False, name, _missing_summary(missing), details)
    found = ", ".join(r.name for r in reqs) or "no external requirement"
    return Item(True, name, found, details)


def _dataset(name: str) -> Item:
    from bench.runtime.fetch.registry import by_name

    fetchable = name in by_name() and by_name()[name].kind == "dataset"
    try:
        ds = catalog.make_dataset(name)
        n = len(ds.ids())
        root = getattr(ds, "root", None)
        return Item(n > 0, name, f"{n} images" + (f" under {root}" if root else ""))
    except BenchError as err:
        summary = f"missing: bench fetch {name}" if fetchable else err.problem
        return Item(False, name, summary, [str(err)])
    except ImportError as err:
        return Item(False, name, f"python package missing: {err.name}")


def _data_lines() -> list[str]:
    from bench.runtime import fetch as F

    return ["  " + fit(f"data dir: {F.data_dir()} ($BENCH_DATA_DIR)", WIDTH - 2),
            "  " + fit(f"mirror: {F.mirror() or 'none ($BENCH_MIRROR)'}; offline: {'yes' if F.offline() else 'no'}"
                        "; every download: bench fetch --list", WIDTH - 2)]


def report(weights_dir: str | None = None, verbose: bool = False) -> str:
    """The doctor's screen as text (no line over 100 columns; nothing is downloaded)."""
    saved = os.environ.get("BENCH_AUTO_FETCH")
    os.environ["BENCH_AUTO_FETCH"] = "0"
    try:
        options = {"weights_dir": weights_dir}
        out = ["codecs:"]
        for n in catalog.registry("codec").names():
            out += _component("codec", n, options).lines(verbose)
        out.append("metrics:")
        for n in catalog.registry("metric").names():
            out += _component("metric", n, options).lines(verbose)
        out.append("segmenters (cards with published weights):")
        for e in catalog.registry("segmenter"):
            if e.card.get("weights"):
                out += _component("segmenter", e.name, options).lines(verbose)
        out.append("datasets:")
        for n in catalog.registry("dataset").names():
            out += _dataset(n).lines(verbose)
        out.append("downloads:")
        out += _data_lines()
        return "\n".join(out)
    finally:
        if saved is None:
            os.environ.pop("BENCH_AUTO_FETCH", None)
        else:
            os.environ["BENCH_AUTO_FETCH"] = saved
