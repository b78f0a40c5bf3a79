"""``bench list`` and ``bench doctor``: what is registered, found and missing."""

from __future__ import annotations

import argparse
from typing import Any

from bench.cli.terminal import WIDTH, fit
from bench.errors import BenchError


def _availability(obj: Any) -> tuple[bool, str]:
    from bench.codecs.base import unmet

    missing = unmet(obj)
    if not missing:
        return True, "ok"
    return False, "; ".join(f"{r.kind} {r.name}: {r.detail}" for r in missing)


def _status(kind: str, name: str) -> tuple[str, str]:
    """("available" | "UNAVAILABLE", why) of a codec or metric; ("", "") for other kinds."""
    from bench.registry import catalog

    if kind not in ("codec", "metric"):
        return "", ""
    try:
        obj = catalog.make_codec(name) if kind == "codec" else catalog.make_metric(name)
        ok, why = _availability(obj)
        return ("available", "") if ok else ("UNAVAILABLE", why)
    except BenchError as err:
        return "UNAVAILABLE", err.problem
    except ImportError as err:
        return "UNAVAILABLE", f"python package missing: {err.name}"


def list_lines(kind: str, verbose: bool = False) -> list[str]:
    """``bench list``: one line per registered item (name, availability, the description's
    first sentence), each at most :data:`~bench.cli.terminal.WIDTH` columns; ``verbose`` adds the full
    description, the reason an item is unavailable and a dataset's protocols, wrapped below."""
    import textwrap

    from bench.registry import catalog

    lines = []
    entries = list(catalog.registry(kind))
    name_w = min(max((len(e.name) for e in entries), default=8), 28)
    for entry in entries:
        desc = " ".join(str(entry.card.get("description", "")).split())
        status, why = _status(kind, entry.name)
        first = desc.split(". ")[0].rstrip(".")
        if kind == "segmenter":  # what the off-domain caveat compares with the dataset's domain
            first = (f"domain: {entry.card.get('domain') or 'not declared'}; "
                     f"classes: {entry.card.get('class_set') or 'given as params'}")
        head = f"{entry.name:{name_w}s} " + (f"{status:11s} " if status else "")
        if status == "UNAVAILABLE" and not verbose:
            first = f"{why} (details: --verbose)"
        lines.append(fit(head + " ".join(first.split()), squash=False))  # the columns stay aligned
        if verbose:
            wrap = textwrap.TextWrapper(WIDTH, initial_indent=" " * 4, subsequent_indent=" " * 4,
                                        break_on_hyphens=False, break_long_words=True)
            details = [desc] + ([f"unavailable: {why}"] if why else [])
            if kind == "dataset" and entry.card.get("protocols"):
                details.append(f"protocols (--protocol): {', '.join(entry.card['protocols'])}")
            lines += [ln for d in details if d for ln in wrap.wrap(d)]
    return lines


def cmd_list(args: argparse.Namespace) -> int:
    for line in list_lines(args.what.rstrip("s"), verbose=bool(getattr(args, "verbose", False))):
        print(line)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from bench.cli.doctor import report

    print(report(weights_dir=args.weights_dir, verbose=args.verbose))
    return 0


def add_parsers(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    ls = sub.add_parser("list", parents=common,
                        help="registered codecs, datasets, metrics or segmenters and their availability "
                             "(one line each; details with --verbose)")
    ls.add_argument("what", choices=["codecs", "datasets", "metrics", "segmenters"])
    ls.set_defaults(func=cmd_list)

    doc = sub.add_parser("doctor", parents=common,
                         help="what is found and what is missing, with the `bench fetch` command (-v: details)")
    doc.add_argument("--weights-dir")
    doc.set_defaults(func=cmd_doctor)

