"""The ``bench`` command line: the parser of every subcommand and :func:`main`, the only
place that turns errors into exit codes.

Every error ends as one line on stderr (``error: <what is wrong>; fix: <what to do>``) and
the exit code of its class (:data:`bench.errors.EXIT_CODES`, printed by ``bench --help``);
an unexpected exception prints one line too (its traceback with ``-v``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench import __version__
from bench.cli import admin, fetch, info, results, run
from bench.cli.admin import cmd_train
from bench.cli.common import Parser, global_options
from bench.cli.terminal import Terminated, guarded_terminal, printable
from bench.errors import (
    BROKEN_PIPE_EXIT,
    EXIT_CODES,
    INTERNAL_EXIT,
    INTERRUPTED_EXIT,
    TERMINATED_EXIT,
    BenchError,
    OutputError,
)

log = logging.getLogger("bench")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="bench", description="Evaluation harness for semantic image compression.",
               parents=[global_options(False)], epilog=exit_code_table(),
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    common = [global_options(True)]  # every subcommand but train takes -v and --out
    for group in (run, results, info, admin, fetch):
        group.add_parsers(sub, common)
    return p


def exit_code_table() -> str:
    """The exit codes, one per class of error (``bench --help`` epilog, README)."""
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())


def one_line(err: BenchError) -> str:
    """``<problem>; fix: <fix>`` on one line (line breaks inside either become " | ")."""
    def flat(text: str) -> str:
        return " | ".join(line.strip() for line in str(text).splitlines() if line.strip())

    return flat(err.problem) + (f"; fix: {flat(err.fix)}" if err.fix else "")


def _kept(command: str) -> str:
    """What an interrupted command leaves: stored rows to resume from, or complete files."""
    if command in ("run", "sweep", "train"):
        return "finished rows are stored; re-run the same command to resume"
    if command == "fetch":
        return "a partial download is kept; re-run the same command to resume it"
    return "the files written so far are complete (none half-written); re-run the command for the rest"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "train" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    with guarded_terminal():  # SIGTERM as Ctrl-C; no control character from the store reaches stdout
        return _dispatch(args, rest)


def _dispatch(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        if args.command == "train":
            return cmd_train(args, rest)
        return int(args.func(args) or 0)
    except BenchError as err:
        print(f"error: {printable(one_line(err))}", file=sys.stderr)
        return err.exit_code
    except sqlite3.Error as err:  # raised outside Store's own methods (e.g. the result cache's tables)
        from bench.storage.store import store_error

        store_err = store_error(err, Path(args.out) / "bench.sqlite")
        print(f"error: {printable(one_line(store_err))}", file=sys.stderr)
        return store_err.exit_code
    except Terminated:  # SIGTERM: as Ctrl-C, with its own exit code (128 + 15)
        print(f"terminated (SIGTERM): {_kept(args.command)}", file=sys.stderr)
        return TERMINATED_EXIT
    except KeyboardInterrupt:
        print(f"interrupted: {_kept(args.command)}", file=sys.stderr)
        return INTERRUPTED_EXIT
    except BrokenPipeError:  # `bench … | head` has what it wanted: no error, and none at exit's flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        return BROKEN_PIPE_EXIT
    except OSError as err:  # a file the command could not read or write
        from bench.runtime.limits import os_error_fix

        where = f"cannot access {err.filename}: " if getattr(err, "filename", None) else ""
        print(f"error: {where}{err.strerror or err}; fix: {os_error_fix(err)}"
              + ("" if args.verbose else " (run with -v for the traceback)"), file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        return OutputError.exit_code
    except Exception as err:  # a bug: one line, the traceback only when asked for
        print(f"error: unexpected {type(err).__name__}: {' '.join(str(err).split())}"
              + ("" if args.verbose else " (run with -v for the traceback)"), file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        return INTERNAL_EXIT
