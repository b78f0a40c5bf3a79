"""``bench list`` and ``bench doctor``: what is registered, found and missing."""

from __future__ import annotations

import argparse
from typing import Any

from bench.errors import BenchError


def _availability(obj: Any) -> tuple[bool, str]:
    from bench.codecs.base import unmet

    missing = unmet(obj)
    if not missing:
        return True, "ok"
    return False, "; ".join(f"{r.kind} {r.name}: {r.detail}" for r in missing)


def cmd_list(args: argparse.Namespace) -> int:
    from bench.registry import catalog

    kind = args.what.rstrip("s")
    reg = catalog.registry(kind)
    for entry in reg:
        desc = entry.card.get("description", "")
        status = ""
        if kind in ("codec", "metric"):
            try:
                obj = catalog.make_codec(entry.name) if kind == "codec" else catalog.make_metric(entry.name)
                ok, why = _availability(obj)
                status = "available" if ok else f"UNAVAILABLE ({why})"
            except BenchError as err:
                status = f"UNAVAILABLE ({err.problem})"
            except ImportError as err:
                status = f"UNAVAILABLE (python package missing: {err.name})"
        print(f"{entry.name:12s} {status}\n{'':12s} {desc}".rstrip())
        if kind == "segmenter":  # what the off-domain caveat compares with the dataset's domain
            print(f"{'':12s} domain: {entry.card.get('domain') or 'not declared'}; "
                  f"classes: {entry.card.get('class_set') or 'given as params'}")
        if kind == "dataset" and entry.card.get("protocols"):
            print(f"{'':12s} protocols (--protocol): {', '.join(entry.card['protocols'])}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from bench.cli.doctor import report

    print(report(weights_dir=args.weights_dir, verbose=args.verbose))
    return 0


def add_parsers(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    ls = sub.add_parser("list", parents=common,
                        help="registered codecs, datasets, metrics or segmenters and their availability")
    ls.add_argument("what", choices=["codecs", "datasets", "metrics", "segmenters"])
    ls.set_defaults(func=cmd_list)

    doc = sub.add_parser("doctor", parents=common,
                         help="what is found and what is missing, with the `bench fetch` command (-v: details)")
    doc.add_argument("--weights-dir")
    doc.set_defaults(func=cmd_doctor)

