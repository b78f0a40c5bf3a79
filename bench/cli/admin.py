"""``bench recover`` (a damaged store) and ``bench train`` (a learned codec's own trainer)."""

from __future__ import annotations

import argparse
from typing import Any

from bench.cli.common import store_path
from bench.errors import ConfigError, StoreError


def cmd_recover(args: argparse.Namespace) -> int:
    """Copy the readable runs and rows of a damaged store into a fresh one."""
    from bench.storage.recover import recover, recover_in_place

    path = store_path(args)
    if not path.exists():
        raise StoreError(f"no run store at {path}", "pass --out DIR, the results folder that holds bench.sqlite")
    from bench.storage.store import not_a_store_error, not_sqlite

    if not_sqlite(path):  # no SQLite page to read rows from
        raise not_a_store_error(path, "not an SQLite file")
    if not args.force:
        from bench.storage.store import Store

        with Store(path, readonly=True) as store:
            problems = store.problems()
        if not problems:
            print(f"{path} passes the integrity check: nothing to recover (--force copies it anyway)")
            return 0
    if args.dest:
        result = recover(path, args.dest)
        print(result.summary())
        print(f"to use it: mv {args.dest} {path}   (or pass --out to the folder of {args.dest} as bench.sqlite)")
    else:
        result, kept = recover_in_place(path)
        print(result.summary())
        print(f"the damaged file is kept as {kept}; re-run your `bench run` command to recompute the lost rows")
    return 0


def cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    if args.codec != "spadegan":
        raise ConfigError(f"no training entry point for {args.codec!r}", "train spadegan, or use the codec's own repo")
    from bench.codecs.spadegan.train import main as train_main

    return int(train_main(rest) or 0)


def add_parsers(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    rec = sub.add_parser("recover", parents=common, help="copy the readable runs and rows of a damaged store into a fresh one")
    rec.add_argument("--dest", help="write the recovered store to this file instead of replacing bench.sqlite "
                                    "(the damaged file is then kept as bench.sqlite.damaged-<time>)")
    rec.add_argument("--force", action="store_true", help="copy even when the store passes the integrity check")
    rec.set_defaults(func=cmd_recover)

    # train passes its options through (its --out is the checkpoint): no global options after it
    tr = sub.add_parser("train", help="train or fine-tune a learned codec (spadegan)")
    tr.add_argument("codec")
    tr.set_defaults(func=None)
