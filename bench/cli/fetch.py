"""``bench fetch``: download (or import) the registry's weights and datasets, hash-checked."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from bench.cli.terminal import fit
from bench.errors import ConfigError


def apply_source_options(args: argparse.Namespace) -> None:
    """``--mirror``, ``--offline`` and ``--data-dir`` become the environment (inherited by workers)."""
    if getattr(args, "mirror", None):
        os.environ["BENCH_MIRROR"] = args.mirror
    if getattr(args, "offline", False):
        os.environ["BENCH_OFFLINE"] = "1"
    if getattr(args, "data_dir", None):
        os.environ["BENCH_DATA_DIR"] = str(Path(args.data_dir).expanduser())


def list_lines(verbose: bool = False) -> list[str]:
    """One line per registry entry (name, kind, size, state, hash check) within 100 columns."""
    from bench.runtime import fetch as F

    head = f"{'name':42s} {'kind':7s} {'size':>7s}  {'state':12s} hash"
    out = [head]
    for e in F.entries():
        line = f"{e.name[:42]:42s} {e.kind:7s} {e.size_text():>7s}  {F.status(e):12s} {e.hash_text()}"
        out.append(fit(line, squash=False))
        if verbose:
            first = e.files[0]
            origin = (first.urls[0] if first.urls else f"Google Drive id {first.gdrive}" if first.gdrive
                      else f"Cityscapes package {first.cityscapes}")
            more = f" (+{len(e.files) - 1} more files)" if len(e.files) > 1 else ""
            for text in (e.licence and f"licence: {e.licence}", e.note, f"from: {origin}{more}",
                         f"into: {e.folder()}"):
                if text:
                    out.append(fit("    " + text))
    mirror = F.mirror() or "none"
    out.append(fit(f"data dir: {F.data_dir()}"))
    out.append(fit(f"mirror: {mirror}; offline: {'yes' if F.offline() else 'no'}"))
    out.append("hash: sha256 = full hash checked; prefix = published sha256 prefix checked (torch.hub);")
    out.append("      recorded = none published: recorded at the first fetch, checked from then on")
    return out


def cmd_fetch(args: argparse.Namespace) -> int:
    from bench.runtime import fetch as F

    apply_source_options(args)
    if args.list:
        print("\n".join(list_lines(args.verbose)))
        return 0
    from_dir = Path(args.from_dir).expanduser() if args.from_dir else None
    if from_dir is not None:
        report = F.import_from(from_dir, args.names or None)
        for name, state in report:
            print(fit(f"{name}: {state}"))
        if not report:
            print(f"no registry file found below {from_dir}")
        return 3 if any(state != "imported" for _, state in report) else 0
    if not args.names:
        raise ConfigError("bench fetch: name what to fetch",
                          "e.g. bench fetch espnetv2-2.0-1024x512, bench fetch weights (see bench fetch --list)")
    for entry in F.select(args.names):
        before = F.status(entry)
        F.fetch_entry(entry, progress=not args.quiet)
        where = entry.folder() / entry.files[0].file if entry.kind == "weights" else entry.folder()
        print(fit(f"{entry.name}: {'already present' if before == 'present' else 'fetched'} ({where})"))
    return 0


def add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mirror", metavar="URL",
                        help="base URL holding every file under its registry file name (also $BENCH_MIRROR)")
    parser.add_argument("--offline", action="store_true",
                        help="never download (also $BENCH_OFFLINE=1): missing weights are an error naming "
                             "the `bench fetch` command")


def add_parsers(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    f = sub.add_parser("fetch", parents=common,
                       help="download weights and datasets (hash-checked, resumable) into $BENCH_DATA_DIR",
                       description="NAME: a registry entry, a group (espnetv2, lpips, compressai, segmenters, "
                                   "semantic-codecs), weights, datasets or all. See --list.")
    f.add_argument("names", nargs="*", metavar="NAME")
    f.add_argument("--list", action="store_true", help="one line per entry: size, present/missing/damaged, hash")
    f.add_argument("--from", dest="from_dir", metavar="DIR",
                   help="import files copied by hand (found below DIR by registry file name), hash-checked")
    f.add_argument("--data-dir", help="cache folder (default $BENCH_DATA_DIR, else the user cache folder)")
    f.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_source_options(f)
    f.set_defaults(func=cmd_fetch)
