"""Shared pieces of the ``bench`` command line: option parsing, the run store of ``--out``,
the parent parsers every subcommand takes, and the option groups several commands share."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, OutputError


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_rates(items: Sequence[str] | None, codecs: Sequence[str] | None = None) -> dict[str, list[str]]:
    """``--rates 10,20`` (every codec) or ``--rates jpeg=10,20 --rates webp=50``.

    An empty value list, or a codec that is not among ``codecs`` (the ``--codecs`` names;
    with ``all``, any registered codec) is a :class:`ConfigError`."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        codec, sep, values = item.partition("=")
        codec = codec.strip() if sep else "*"
        rates = csv_list(values if sep else item)
        if not rates:
            raise ConfigError(f"--rates {item!r} gives no rate value",
                              "e.g. --rates jpeg=10,50 (or drop it for the card's rate points)")
        if sep and codecs is not None and codec not in codecs:
            if "all" in codecs:
                from bench.registry import catalog

                catalog.registry("codec").get(codec)  # unknown name: raises with suggestions
            else:
                raise ConfigError(f"--rates {item!r}: codec {codec!r} is not in --codecs {','.join(codecs)}",
                                  f"add {codec} to --codecs, or fix the name in --rates")
        out[codec] = rates
    return out


def parse_params(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``--param sqgan.checkpoint=/x.ckpt`` → {"sqgan": {"checkpoint": "/x.ckpt"}} (YAML-typed values)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        name, dot, param = key.partition(".")
        if not sep or not dot or not name or not param:
            raise ConfigError(f"--param {item!r} is not NAME.KEY=VALUE", "e.g. --param sqgan.checkpoint=/path/last.ckpt")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            where = getattr(err, "problem", None) or type(err).__name__
            raise ConfigError(f"--param {item!r}: the value is not valid YAML ({where})",
                              "quote it for the shell, e.g. --param 'miou.segmenter_params={scale: 0.5}'") from None
        if not _finite(parsed):
            raise ConfigError(f"--param {item!r}: NaN or infinity is not a valid value", "give a finite number")
        out.setdefault(name, {})[param] = parsed
    return out


def _finite(value: Any) -> bool:
    """False when ``value`` (or a number inside a list / mapping) is a NaN or infinite float."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def positive(value: int | None, option: str, what: str) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{option} {value}: must be at least 1", f"give the number of {what} (1 or more)")


def store_path(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder", "pass --out DIR, the results folder")
    return out / "bench.sqlite"


def open_store(args: argparse.Namespace, *, readonly: bool = True, check: bool = True):
    """The run store of ``--out``: read-only (``mode=ro``, works on a store the user cannot
    write) unless a command writes rows; ``check``: fail on a damaged file before its rows
    are trusted (``PRAGMA quick_check``)."""
    from bench.storage.store import Store

    store = Store(store_path(args), readonly=readonly)
    if check:
        try:
            store.check()
        except BaseException:
            store.close()
            raise
    return store


@contextlib.contextmanager
def new_store(args: argparse.Namespace) -> Iterator[Any]:
    """The store for ``bench run``. When the run is refused before anything is stored (bad
    argument, missing dataset …), a store file (and results folder) created for it is removed."""
    from bench.storage.atomic import output_dir

    path = store_path(args)
    created_dir = not path.parent.exists()
    output_dir(path.parent, "results folder (--out)")
    from bench.storage.lock import lock_path

    created = not path.exists()
    lock_created = not lock_path(path).exists()
    store = open_store(args, readonly=False, check=False)
    try:
        yield store
    except BaseException:
        try:
            empty = created and not store.db.execute("SELECT 1 FROM runs LIMIT 1").fetchone()
        except sqlite3.Error:
            empty = False
        store.close()
        if empty:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            if lock_created:
                lock_path(path).unlink(missing_ok=True)
            if created_dir:
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # only when empty
        raise
    store.close()


def warn_skip(name: str, reason: str) -> None:
    """One line of at most 100 columns: what is skipped and the command that gets what it lacks
    (the whole reason: ``bench doctor -v``)."""
    import re
    import textwrap

    from bench.cli.terminal import WIDTH

    head = f"warning: skipping {name}: "
    get = re.search(r"\(get them: ([^)]*)\)", reason)
    if get:
        text = f"its weights are missing; get them: {get.group(1)}"
    else:  # "codec 'x' is not available: " repeats what the head says
        reason = re.sub(rf"^\w+ '{re.escape(name)}' is not available: ", "", " ".join(reason.split()))
        text = textwrap.shorten(reason, WIDTH - len(head), placeholder=" … (bench doctor -v)")
    print(head + text, file=sys.stderr)


def bootstrap(args: argparse.Namespace, force: bool = False) -> Any:
    """The --ci settings as a bench.analysis.stats.Bootstrap, or None without --ci (and not ``force``)."""
    if not (force or getattr(args, "ci", False)):
        return None
    from bench.analysis.stats import Bootstrap

    if args.ci_resamples < 10:
        raise ConfigError(f"--ci-resamples {args.ci_resamples} is too few", "use 10 or more (default 1000)")
    if args.ci_heavy_resamples < 10:  # a negative count sliced the draws from the end; 0 gave no interval
        raise ConfigError(f"--ci-heavy-resamples {args.ci_heavy_resamples} is too few", "use 10 or more (default 100)")
    if args.ci_seed < 0:
        raise ConfigError(f"--ci-seed {args.ci_seed} is negative", "give a seed of 0 or more (default 0)")
    return Bootstrap(resamples=args.ci_resamples, seed=args.ci_seed,
                     heavy_resamples=min(args.ci_resamples, args.ci_heavy_resamples))


def add_ci_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--ci", action="store_true", help=f"{what} 95%% bootstrap intervals over images (seeded)")
    p.add_argument("--ci-resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--ci-heavy-resamples", type=int, default=100,
                   help="resamples for FID/KID and other non-sum metrics (default 100)")
    p.add_argument("--ci-seed", type=int, default=0, help="bootstrap seed (default 0)")


def finite_float(text: str) -> float:
    """argparse type: a finite float (``nan``, ``inf`` are refused: exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number (NaN and infinity are refused)")
    return value


def delta_tolerances(items: Sequence[str] | None) -> dict[str, float]:
    """``--delta-tolerance psnr=0.1`` (repeatable) → {"psnr": 0.1}; the value must be finite."""
    delta_tol: dict[str, float] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            delta_tol[key.strip()] = finite_float(value)
        except argparse.ArgumentTypeError as err:
            raise ConfigError(f"--delta-tolerance {item!r} is not METRIC=VALUE with a finite value ({err})",
                              "e.g. --delta-tolerance psnr=0.1") from None
    return delta_tol


RATE_HELP = ("bpp drawn / compared: real (transmitted bytes, default) or paper (a codec's paper formula rate, "
             "real bpp for codecs without one)")


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (exit 2, as every usage error)."""

    def error(self, message: str):
        self.exit(ConfigError.exit_code, f"error: {self.prog}: {message}; fix: see `{self.prog} --help`\n")


def global_options(on_subcommand: bool) -> argparse.ArgumentParser:
    """``-v`` and ``--out``, accepted before the subcommand and after it (``bench run … --out DIR``);
    on a subcommand they default to SUPPRESS so that they do not overwrite the top-level values."""
    g = Parser(add_help=False)
    unset: dict[str, Any] = {"default": argparse.SUPPRESS} if on_subcommand else {}
    g.add_argument("-v", "--verbose", action="store_true", help="log progress details; tracebacks of unexpected errors",
                   **(unset or {"default": False}))
    g.add_argument("--out", help="results folder holding bench.sqlite and reports (default: $BENCH_RESULTS or results/)",
                   **(unset or {"default": os.environ.get("BENCH_RESULTS", "results")}))
    return g


def add_log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", action="append", metavar="TRACKER",
                        help="tensorboard[:DIR], mlflow[:URI|DIR] or wandb[:DIR]: also send scalars, RD curves, "
                             "crops and metadata there (repeatable; default dirs under --out)")
