"""The ``bench`` command line. The only place that turns errors into exit codes.

Every error ends as one line on stderr (``error: <what is wrong>; fix: <what to do>``) and
the exit code of its class (:data:`bench.errors.EXIT_CODES`, printed by ``bench --help``);
an unexpected exception prints one line too (its traceback with ``-v``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sqlite3
import sys
import traceback
from pathlib import Path
from typing import Any, Iterator, Sequence

from . import __version__
from .errors import EXIT_CODES, INTERNAL_EXIT, INTERRUPTED_EXIT, BenchError, ConfigError, OutputError, StoreError

log = logging.getLogger("bench")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_rates(items: Sequence[str] | None, codecs: Sequence[str] | None = None) -> dict[str, list[str]]:
    """``--rates 10,20`` (every codec) or ``--rates jpeg=10,20 --rates webp=50``.

    An empty value list, or a codec that is not among ``codecs`` (the ``--codecs`` names;
    with ``all``, any registered codec) is a :class:`ConfigError`."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        codec, sep, values = item.partition("=")
        codec = codec.strip() if sep else "*"
        rates = _csv(values if sep else item)
        if not rates:
            raise ConfigError(f"--rates {item!r} gives no rate value",
                              "e.g. --rates jpeg=10,50 (or drop it for the card's rate points)")
        if sep and codecs is not None and codec not in codecs:
            if "all" in codecs:
                from . import catalog

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
            out.setdefault(name, {})[param] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            where = getattr(err, "problem", None) or type(err).__name__
            raise ConfigError(f"--param {item!r}: the value is not valid YAML ({where})",
                              "quote it for the shell, e.g. --param 'miou.segmenter_params={scale: 0.5}'") from None
    return out


def _positive(value: int | None, option: str, what: str) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{option} {value}: must be at least 1", f"give the number of {what} (1 or more)")


def _store_path(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder", "pass --out DIR, the results folder")
    return out / "bench.sqlite"


def _store(args: argparse.Namespace, *, readonly: bool = True, check: bool = True):
    """The run store of ``--out``: read-only (``mode=ro``, works on a store the user cannot
    write) unless a command writes rows; ``check``: fail on a damaged file before its rows
    are trusted (``PRAGMA quick_check``)."""
    from .store import Store

    store = Store(_store_path(args), readonly=readonly)
    if check:
        try:
            store.check()
        except BaseException:
            store.close()
            raise
    return store


@contextlib.contextmanager
def _new_store(args: argparse.Namespace) -> Iterator[Any]:
    """The store for ``bench run``. When the run is refused before anything is stored (bad
    argument, missing dataset …), a store file (and results folder) created for it is removed."""
    from .atomic import output_dir

    path = _store_path(args)
    created_dir = not path.parent.exists()
    output_dir(path.parent, "results folder (--out)")
    created = not path.exists()
    store = _store(args, readonly=False, check=False)
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
            if created_dir:
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # only when empty
        raise
    store.close()


# -- commands ---------------------------------------------------------------------------
def _run_config(args: argparse.Namespace) -> Any:
    """The RunConfig of ``bench run`` (and ``bench sweep``) arguments, every one checked
    before a store is opened."""
    from . import catalog
    from .runner import RunConfig

    # every argument is checked before the store is opened (no empty bench.sqlite for a typo)
    _positive(args.limit, "--limit", "images")
    _positive(args.workers, "--workers", "worker processes")
    _positive(args.batch_size, "--batch-size", "images per metric batch")
    _positive(args.chunk, "--chunk", "images per Ray shard")
    codec_names = _csv(args.codecs)
    if not codec_names:
        raise ConfigError(f"--codecs {args.codecs!r} names no codec", "e.g. --codecs jpeg2000,webp (or all)")
    rates = parse_rates(args.rates, codec_names)
    params = parse_params(args.param)
    _store_path(args)
    # the originals' features and segmentations are cached beside the store unless told otherwise
    os.environ.setdefault("BENCH_CACHE_DIR", str(Path(args.out) / "cache"))

    metric_params = {name: params.pop(name) for name in list(params) if name in catalog.registry("metric")}
    dataset_params = dict(params.pop(args.dataset, {}))
    segmenter = params.pop("segmenter", {}) if args.semantics == "segmenter" else None
    if args.root:
        dataset_params["root"] = args.root
    return RunConfig(
        dataset=args.dataset,
        codecs=codec_names,
        metrics=_csv(args.metrics),
        rates=rates,
        limit=args.limit,
        dataset_params=dataset_params,
        codec_params=params,
        metric_params=metric_params,
        semantics_segmenter=segmenter,
        protocol=args.protocol,
        metric_options={"weights_dir": args.weights_dir, "allow_random_weights": args.allow_random_weights,
                        "device": args.device},
        retry_failed=args.retry_failed,
        tag=args.tag,
        workers=args.workers,
        batch_size=args.batch_size,
        use_cache=not args.no_cache,
        keep_reconstructions=args.keep_reconstructions,
    )


def _warn_skip(name: str, reason: str) -> None:
    print(f"warning: skipping {name}: {reason}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from . import api

    config = _run_config(args)
    executor = None
    if args.executor == "ray":
        from .ray_executor import RayExecutor

        executor = RayExecutor(address=args.address, chunk=args.chunk, batch_size=args.batch_size,
                               gpus_per_task=args.gpus_per_task)
    elif args.gpus_per_task is not None:
        raise ConfigError("--gpus-per-task applies to Ray shards", "add --executor ray, or drop --gpus-per-task")

    with _new_store(args) as store:
        run_id = api.run(config, store, progress=not args.quiet, on_skip=_warn_skip, executor=executor,
                         log=args.log, step=args.step)
        print(f"run {run_id}: {store.count(run_id)} rows in {store.path}")
        if not args.no_report:
            return _report(store, run_id, Path(args.out) / run_id)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Evaluate every checkpoint matching --checkpoints (one tagged run each), write the
    metric-vs-step table and figure, and gate the newest checkpoint (exit 6 on a regression)."""
    from .compare import REGRESSION_EXIT
    from .sweep import (SweepResult, check_references, find_checkpoints, gate, run_sweep, sweep_tables,
                        write_outputs)

    args.codecs = args.codec
    config = _run_config(args)
    checkpoints, axis = find_checkpoints(args.checkpoints, args.step_pattern)
    metrics = _csv(args.metric) if args.metric else None
    delta_tolerance = _delta_tolerances(args.delta_tolerance)
    with _new_store(args) as store:
        check_references(store, args.codec, gate=args.gate, anchor=args.anchor)
        run_sweep(config, args.codec, checkpoints, store, axis=axis, checkpoint_param=args.checkpoint_param,
                  log=args.log, progress=not args.quiet, on_skip=_warn_skip)
        for c in checkpoints:
            print(f"{axis}={c.x:<8} {c.path.name:32s} {c.sha256[:12]}  run {c.run_id}"
                  f"{'  (already evaluated)' if c.skipped else ''}")
        table, bd = sweep_tables(store, args.codec, checkpoints, axis=axis, anchor=args.anchor, metrics=metrics)
        result = SweepResult(args.codec, axis, checkpoints, table, bd)
        dest = Path(args.dest) if args.dest else Path(args.out) / f"sweep-{args.codec}"
        write_outputs(result, dest)
        print(f"{result.computed} of {len(checkpoints)} checkpoints evaluated now; table and figure: {dest}")
        if args.gate:
            result.regressions, result.gate_note = gate(
                store, args.codec, checkpoints, args.gate, metrics=metrics, tolerance=args.tolerance,
                delta_tolerance=delta_tolerance)
            print(result.gate_note)
            for line in result.regressions:
                print(f"REGRESSION: {line}")
            if result.regressions:
                return REGRESSION_EXIT
            print("gate: no regression beyond tolerance")
    return 0


def _bootstrap(args: argparse.Namespace, force: bool = False) -> Any:
    """The --ci settings as a bench.stats.Bootstrap, or None without --ci (and not ``force``)."""
    if not (force or getattr(args, "ci", False)):
        return None
    from .stats import Bootstrap

    if args.ci_resamples < 10:
        raise ConfigError(f"--ci-resamples {args.ci_resamples} is too few", "use 10 or more (default 1000)")
    if args.ci_heavy_resamples < 10:  # a negative count sliced the draws from the end; 0 gave no interval
        raise ConfigError(f"--ci-heavy-resamples {args.ci_heavy_resamples} is too few", "use 10 or more (default 100)")
    if args.ci_seed < 0:
        raise ConfigError(f"--ci-seed {args.ci_seed} is negative", "give a seed of 0 or more (default 0)")
    return Bootstrap(resamples=args.ci_resamples, seed=args.ci_seed,
                     heavy_resamples=min(args.ci_resamples, args.ci_heavy_resamples))


def _add_ci_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--ci", action="store_true", help=f"{what} 95%% bootstrap intervals over images (seeded)")
    p.add_argument("--ci-resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--ci-heavy-resamples", type=int, default=100,
                   help="resamples for FID/KID and other non-sum metrics (default 100)")
    p.add_argument("--ci-seed", type=int, default=0, help="bootstrap seed (default 0)")


def _report(store: Any, run_id: str, out_dir: Path, boot: Any = None, rate: str = "real") -> int:
    from .report import load_run, rate_view, render_console, summarise, write_report

    loaded = load_run(store, run_id)  # the rows, read once for the console and the files
    summary = summarise(store, run_id, loaded)
    if boot is not None:
        from .report.intervals import add_intervals

        summary = add_intervals(summary, store, run_id, loaded, boot)
    paths = write_report(store, run_id, out_dir, summary, loaded, rate=rate)
    print(render_console(rate_view(summary, rate)))
    print(f"report: {out_dir} ({len(paths)} files)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .atomic import output_dir

    if args.more_runs and not args.html:
        raise ConfigError("several runs make one report only with --html", "add --html, or report one run")
    boot = _bootstrap(args)  # options checked before the store is read
    if args.dest:
        output_dir(args.dest, "--dest folder")
    with _store(args) as store:  # read-only: the report goes to files, not into the store
        run = store.run(args.run)
        if args.html:
            return _html_report(args, store, [run["run_id"]] + [store.run(r)["run_id"] for r in args.more_runs], boot)
        dest = Path(args.dest) if args.dest else Path(args.out) / run["run_id"]
        output_dir(dest, "report folder", "pass --dest DIR, a folder you can write (the store itself is only read)")
        return _report(store, run["run_id"], dest, boot, args.rate)


def _html_report(args: argparse.Namespace, store: Any, run_ids: list[str], boot: Any = None) -> int:
    from .atomic import output_dir
    from .report.html import HtmlOptions, write_html

    options = HtmlOptions(bpp=args.bpp, image_id=args.image, crop=args.crop, crops=not args.no_crops,
                          codec_params=parse_params(args.param), ci=boot, rate=args.rate)
    dest = output_dir(Path(args.dest) if args.dest else Path(args.out) / run_ids[0], "--dest folder")
    path = write_html(store, run_ids, dest / "report.html", options)
    print(f"html report: {path}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """List runs. A tagged run shows its codecs as ``name@tag``; a codec that recorded a
    checkpoint hash (``params.checkpoint_sha256``) shows ``[ckpt <first 8 hex>]``."""
    import datetime

    from .compare import run_codec_labels

    if not _store_path(args).exists():
        print(f"no runs: no run store at {_store_path(args)} (start one with `bench run`)")
        return 0
    with _store(args) as store:
        runs = store.runs()
        shown = 0
        for run in runs:
            meta, cfg = run["meta"], run["config"]
            if args.dataset and cfg.get("dataset") != args.dataset:
                continue
            if args.codec and args.codec not in meta.get("codecs", {}):
                continue
            if args.tag and meta.get("tag") != args.tag:
                continue
            shown += 1
            when = datetime.datetime.fromtimestamp(run["updated"]).strftime("%Y-%m-%d %H:%M")
            labels = run_codec_labels(run)
            print(f"{run['run_id']}  {when}  {run['status']:8s}  {store.count(run['run_id']):6d} rows  "
                  f"{cfg.get('dataset')}  tag={meta.get('tag') or '-'}  {','.join(labels.values())}")
        if not runs:
            print(f"no runs in {store.path}")
        elif not shown:
            print("no run matches the filters")
    return 0


def _delta_tolerances(items: Sequence[str] | None) -> dict[str, float]:
    """``--delta-tolerance psnr=0.1`` (repeatable) → {"psnr": 0.1}."""
    delta_tol: dict[str, float] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            delta_tol[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--delta-tolerance {item!r} is not METRIC=VALUE",
                              "e.g. --delta-tolerance psnr=0.1") from None
    return delta_tol


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import REGRESSION_EXIT, compare, render_text

    delta_tol = _delta_tolerances(args.delta_tolerance)
    rate_map = _rate_map(args.pair_rate)
    ci = _bootstrap(args, force=args.gate == "significant")
    dest = _csv_dest(args.csv) if args.csv else None
    with _store(args) as store:
        result = compare(store, args.run_a, args.run_b, metrics=_csv(args.metric) if args.metric else None,
                         codecs=_csv(args.codec) if args.codec else None, anchor=args.anchor, test=args.test,
                         tolerance=args.tolerance, delta_tolerance=delta_tol, method=args.method,
                         ci=ci, rate_map=rate_map, rate=args.rate)
    print(render_text(result))
    if dest is not None:
        from .atomic import write_with

        write_with(dest / "compare_bd.csv", lambda tmp: result.metrics.to_csv(tmp, index=False))
        write_with(dest / "compare_points.csv", lambda tmp: result.points.to_csv(tmp, index=False))
        if result.paired is not None:
            paired = result.paired
            write_with(dest / "compare_paired.csv", lambda tmp: paired.to_csv(tmp, index=False))
        print(f"tables: {dest}/compare_bd.csv, compare_points.csv" + (", compare_paired.csv" if result.paired is not None else ""))
    return REGRESSION_EXIT if result.gate(args.gate) and not args.no_gate else 0


def _rate_map(items: Sequence[str] | None) -> dict[str, str]:
    """--pair-rate A=B items as {rate of run A: rate of run B}."""
    out = {}
    for item in items or []:
        a, sep, b = item.partition("=")
        if not sep or not a.strip() or not b.strip():
            raise ConfigError(f"--pair-rate {item!r} is not RATE_A=RATE_B", "e.g. --pair-rate 50=45")
        out[a.strip()] = b.strip()
    return out


def _csv_dest(folder: str) -> Path:
    from .atomic import output_dir

    return output_dir(folder, "--csv folder")


def cmd_export(args: argparse.Namespace) -> int:
    from .atomic import output_file
    from .export import export_run

    if args.output:
        output_file(args.output, "export file (-o)")
    with _store(args) as store:
        run = store.run(args.run)
        path = Path(args.output) if args.output else Path(args.out) / run["run_id"] / f"rows.{args.format}"
        export_run(store, run["run_id"], path, args.format, rate=args.rate)
        print(f"exported {store.count(run['run_id'])} rows of {run['run_id']} to {path}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    import warnings

    from .figures import PRESETS, ProtocolWarning, write_figure

    names = list(PRESETS) if args.preset == "all" else _csv(args.preset)
    boot = _bootstrap(args)
    with _store(args) as store:
        dest = Path(args.dest) if args.dest else Path(args.out) / "figures"
        for name in names:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ProtocolWarning)
                paths = write_figure(name, store, args.runs or ["latest"], dest, ssm=args.ssm_bpp,
                                     ci=boot, rate=args.rate)
            for w in caught:  # a figure drawn from runs of another protocol than its paper's
                print(f"warning: {w.message}", file=sys.stderr)
            print(f"{name}: {', '.join(str(p) for p in paths)}")
    return 0


def _availability(obj: Any) -> tuple[bool, str]:
    from .codecs.base import unmet

    missing = unmet(obj)
    if not missing:
        return True, "ok"
    return False, "; ".join(f"{r.kind} {r.name}: {r.detail}" for r in missing)


def cmd_list(args: argparse.Namespace) -> int:
    from . import catalog

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
        if kind == "dataset" and entry.card.get("protocols"):
            print(f"{'':12s} protocols (--protocol): {', '.join(entry.card['protocols'])}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import report

    print(report(weights_dir=args.weights_dir))
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    """Copy the readable runs and rows of a damaged store into a fresh one."""
    from .recover import recover, recover_in_place

    path = _store_path(args)
    if not path.exists():
        raise StoreError(f"no run store at {path}", "pass --out DIR, the results folder that holds bench.sqlite")
    if not args.force:
        from .store import Store

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
    from .codecs.spadegan.train import main as train_main

    return int(train_main(rest) or 0)


RATE_HELP = ("bpp drawn / compared: real (transmitted bytes, default) or paper (a codec's paper formula rate, "
             "real bpp for codecs without one)")


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (exit 2, as every usage error)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(ConfigError.exit_code, f"error: {self.prog}: {message}; fix: see `{self.prog} --help`\n")


def _global_options(on_subcommand: bool) -> argparse.ArgumentParser:
    """``-v`` and ``--out``, accepted before the subcommand and after it (``bench run … --out DIR``);
    on a subcommand they default to SUPPRESS so that they do not overwrite the top-level values."""
    g = _Parser(add_help=False)
    unset = {"default": argparse.SUPPRESS} if on_subcommand else {}
    g.add_argument("-v", "--verbose", action="store_true", help="log progress details; tracebacks of unexpected errors",
                   **(unset or {"default": False}))
    g.add_argument("--out", help="results folder holding bench.sqlite and reports (default: $BENCH_RESULTS or results/)",
                   **(unset or {"default": os.environ.get("BENCH_RESULTS", "results")}))
    return g


def exit_code_table() -> str:
    """The exit codes, one per class of error (``bench --help`` epilog, README)."""
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())


def _add_log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", action="append", metavar="TRACKER",
                        help="tensorboard[:DIR] or mlflow[:URI|DIR]: also send scalars, RD curves, crops and "
                             "metadata there (repeatable; default dirs under --out)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bench", description="Evaluation harness for semantic image compression.",
                                parents=[_global_options(False)], epilog=exit_code_table(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    common = [_global_options(True)]  # every subcommand but train takes -v and --out

    r = sub.add_parser("run", parents=common, help="run codecs × rates over a dataset and report")
    r.add_argument("--codecs", required=True, help="comma-separated codec names, or 'all'")
    r.add_argument("--dataset", required=True)
    r.add_argument("--root", help="dataset root folder (overrides card and env)")
    r.add_argument("--protocol", help="a named protocol of the dataset's card (cityscapes: sqgan, spic, iwai, "
                   "native; coco: iwai, native): resolution, resampling, classes, senders' labels, mIoU "
                   "averaging; recorded and part of the run id (default: the card's params, 'card')")
    r.add_argument("--rates", action="append", help="'v1,v2' for every codec or 'codec=v1,v2' (repeatable)")
    r.add_argument("--metrics", default="all", help="comma-separated metric names, or 'all' (default)")
    r.add_argument("--limit", type=int, help="only the first N images")
    r.add_argument("--param", action="append",
                   help="NAME.KEY=VALUE for a codec, a metric or the dataset, e.g. fid.patch=256 (repeatable)")
    r.add_argument("--semantics", choices=["ground-truth", "segmenter"], default="ground-truth",
                   help="label maps for semantic codecs' senders: the dataset's, or a segmenter's on the "
                        "original (--param segmenter.name=espnetv2 --param segmenter.scale=2.0 …); recorded")
    r.add_argument("--weights-dir", help="folder searched for metric network and codec weights")
    r.add_argument("--allow-random-weights", action="store_true",
                   help="smoke tests only: run metric networks with random weights, marked as such")
    r.add_argument("--device", help="cpu, cuda, cuda:1 … (default: CUDA when available)")
    r.add_argument("--tag", help="label that makes this a separate run")
    r.add_argument("--retry-failed", action="store_true", help="recompute rows recorded as failed")
    r.add_argument("--workers", type=int, help="codec worker processes (default: one per core "
                   "when enough codings can run in parallel to repay starting them, else none)")
    r.add_argument("--batch-size", type=int, default=8, help="metric-network batch (results do not depend on it)")
    r.add_argument("--no-cache", action="store_true", help="do not reuse results cached by content")
    r.add_argument("--keep-reconstructions", action="store_true",
                   help="store reconstructions (PNG) so that adding a metric later needs no re-encoding")
    r.add_argument("--executor", choices=["local", "ray"], default="local")
    r.add_argument("--address", help="Ray cluster address (default: start a local one)")
    r.add_argument("--chunk", type=int, default=16, help="images per Ray shard")
    r.add_argument("--gpus-per-task", type=float, default=None,
                   help="GPUs a Ray shard that runs a network asks for on a cluster with GPUs "
                        "(default 1; 0.25: four share one; 0: none)")
    r.add_argument("--no-report", action="store_true")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_log_options(r)
    r.add_argument("--step", type=int, help="--log: the step the results are logged at (default 0)")
    r.set_defaults(func=cmd_run)

    sw = sub.add_parser("sweep", parents=common,
                        help="evaluate every checkpoint of a training run (one tagged run each), plot metrics "
                             "against step and gate the newest (exit 6 on a regression)")
    sw.add_argument("--codec", required=True, help="the codec whose checkpoints are swept (e.g. sqgan)")
    sw.add_argument("--checkpoints", required=True, help="glob of checkpoint files, quoted: 'runs/exp1/*.ckpt'")
    sw.add_argument("--checkpoint-param", default="checkpoint",
                    help="codec param that takes the file (default checkpoint)")
    sw.add_argument("--step-pattern", help="regex with one group (or a group named step) giving the step in a "
                                           "file name (default: Lightning's step=N / epoch=N, else the "
                                           "checkpoint's global_step / epoch)")
    sw.add_argument("--dataset", required=True)
    sw.add_argument("--protocol", help="a named protocol of the dataset's card (as for run; default: the card's params)")
    sw.add_argument("--root", help="dataset root folder (overrides card and env)")
    sw.add_argument("--rates", action="append", help="'v1,v2' or 'codec=v1,v2' (default: the card's rate points)")
    sw.add_argument("--metrics", default="all", help="comma-separated metric names, or 'all' (default)")
    sw.add_argument("--limit", type=int, help="only the first N images")
    sw.add_argument("--param", action="append", help="NAME.KEY=VALUE for the codec, a metric or the dataset")
    sw.add_argument("--semantics", choices=["ground-truth", "segmenter"], default="ground-truth")
    sw.add_argument("--weights-dir", help="folder searched for metric network and codec weights")
    sw.add_argument("--allow-random-weights", action="store_true", help="smoke tests only (marked as such)")
    sw.add_argument("--device", help="cpu, cuda, cuda:1 … (default: CUDA when available)")
    sw.add_argument("--batch-size", type=int, default=8, help="metric-network batch")
    sw.add_argument("--anchor", help="run id: BD-rate of every checkpoint against it, per step (table and figure)")
    sw.add_argument("--gate", help="best | first | RUN: exit 6 when the newest checkpoint regresses against the "
                                   "best earlier checkpoint (per metric), the first one, or run RUN")
    sw.add_argument("--metric", help="metrics gated and tabulated (default: psnr,msssim_db,lpips,fid,miou_* present)")
    sw.add_argument("--tolerance", type=float, default=1.0, help="BD-rate regression tolerance in %% (default 1)")
    sw.add_argument("--delta-tolerance", action="append", help="METRIC=VALUE still counted as equal (repeatable)")
    sw.add_argument("--dest", help="folder for the table and figure (default: results/sweep-<codec>/)")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_log_options(sw)
    sw.set_defaults(func=cmd_sweep, tag=None, retry_failed=False, workers=None, no_cache=False,
                    keep_reconstructions=False, chunk=None)

    rep = sub.add_parser("report", parents=common, help="tables and curves of a run")
    rep.add_argument("run", nargs="?", default="latest", help="run id or prefix (default: latest)")
    rep.add_argument("more_runs", nargs="*", help="further runs drawn on the same page (--html only)")
    rep.add_argument("--dest", help="output folder (default: results/<run-id>/)")
    rep.add_argument("--html", action="store_true",
                     help="one self-contained report.html (tables, curves, IoU bars, recomputed crops)")
    rep.add_argument("--bpp", type=float, help="--html: bpp for IoU bars and crops (default: median rate point)")
    rep.add_argument("--image", help="--html: image id for the crops (default: first fully evaluated image)")
    rep.add_argument("--crop", type=int, default=192, help="--html: side of the centre crop in pixels")
    rep.add_argument("--no-crops", action="store_true", help="--html: do not recompute reconstructions")
    rep.add_argument("--param", action="append", help="--html: NAME.KEY=VALUE to rebuild a codec (as for run)")
    rep.add_argument("--rate", choices=["real", "paper"], default="real", help=RATE_HELP)
    _add_ci_args(rep, "tables and curves with")
    rep.set_defaults(func=cmd_report)

    rs = sub.add_parser("runs", parents=common, help="list runs in the store (tagged codecs shown as name@tag)")
    rs.add_argument("--dataset")
    rs.add_argument("--codec")
    rs.add_argument("--tag")
    rs.set_defaults(func=cmd_runs)

    cmp_ = sub.add_parser("compare", parents=common, help="BD-rate / BD-metric and per-rate-point deltas of run B against run A; "
                                          "exit 6 when B regresses")
    cmp_.add_argument("run_a", help="anchor run id or prefix")
    cmp_.add_argument("run_b", nargs="?", help="test run (default: run A, with --anchor/--test codecs)")
    cmp_.add_argument("--metric", help="comma-separated metric keys (default: psnr,msssim_db,lpips,fid,miou_gt,"
                                       "miou_orig where present); 'miou' = miou_gt,miou_orig")
    cmp_.add_argument("--codec", help="only these codecs (comma-separated)")
    cmp_.add_argument("--anchor", help="codec of run A to compare against --test")
    cmp_.add_argument("--test", help="codec of run B (or of run A when no run B)")
    cmp_.add_argument("--tolerance", type=float, default=1.0, help="BD-rate regression tolerance in %% (default 1)")
    cmp_.add_argument("--delta-tolerance", action="append",
                      help="METRIC=VALUE: metric change (its units) still counted as equal (repeatable)")
    cmp_.add_argument("--method", default="pchip", choices=["pchip", "akima", "cubic"],
                      help="BD interpolation (default pchip; cubic = VCEG-M33 polynomial fit)")
    cmp_.add_argument("--csv", help="also write compare_bd.csv and compare_points.csv to this folder")
    cmp_.add_argument("--no-gate", action="store_true", help="report only: exit 0 even on a regression")
    cmp_.add_argument("--rate", choices=["real", "paper"], default="real", help=RATE_HELP)
    cmp_.add_argument("--gate", choices=["tolerance", "significant"], default="tolerance",
                      help="exit 6 on a regression beyond the tolerances (default), or only when its 95%% "
                           "bootstrap interval excludes 0 ('significant'; implies --ci)")
    cmp_.add_argument("--pair-rate", action="append",
                      help="RATE_A=RATE_B: pair these differently labelled rate points in the paired "
                           "differences (with --ci or --gate significant; repeatable)")
    _add_ci_args(cmp_, "paired differences and BD intervals with")
    cmp_.set_defaults(func=cmd_compare)

    ex = sub.add_parser("export", parents=common, help="one tidy row per image x codec x rate (csv, parquet, json)")
    ex.add_argument("run", nargs="?", default="latest")
    ex.add_argument("--format", default="csv", choices=["csv", "parquet", "json"])
    ex.add_argument("--output", "-o", help="file to write (default: results/<run-id>/rows.<format>)")
    ex.add_argument("--rate", choices=["real", "paper"], default="real",
                    help="what the bpp column holds: real (default) or paper (bpp_real and rate_basis added); "
                         "bpp_paper is exported either way")
    ex.set_defaults(func=cmd_export)

    fg = sub.add_parser("figures", parents=common, help="paper figure layouts (sqgan-fig12, spic-fig4, iwai-fig8) as PDF and PNG")
    fg.add_argument("runs", nargs="*", help="runs drawn together (default: latest)")
    fg.add_argument("--preset", required=True, help="preset name(s), comma-separated, or 'all'")
    fg.add_argument("--dest", help="output folder (default: results/figures/)")
    fg.add_argument("--ssm-bpp", type=float, help="spic-fig4: bpp of the lossless semantic map (dotted line); "
                                                  "default: found in the runs' byte parts")
    fg.add_argument("--rate", choices=["real", "paper"],
                    help="x axis: real bpp or paper formula rate (default: the preset's; sqgan-fig12: paper)")
    _add_ci_args(fg, "error bars of")
    fg.set_defaults(func=cmd_figures)

    ls = sub.add_parser("list", parents=common, help="registered codecs, datasets or metrics and their availability")
    ls.add_argument("what", choices=["codecs", "datasets", "metrics"])
    ls.set_defaults(func=cmd_list)

    doc = sub.add_parser("doctor", parents=common, help="what is found and what is missing (binaries, weights, datasets)")
    doc.add_argument("--weights-dir")
    doc.set_defaults(func=cmd_doctor)

    rec = sub.add_parser("recover", parents=common, help="copy the readable runs and rows of a damaged store into a fresh one")
    rec.add_argument("--dest", help="write the recovered store to this file instead of replacing bench.sqlite "
                                    "(the damaged file is then kept as bench.sqlite.damaged-<time>)")
    rec.add_argument("--force", action="store_true", help="copy even when the store passes the integrity check")
    rec.set_defaults(func=cmd_recover)

    # train passes its options through (its --out is the checkpoint): no global options after it
    tr = sub.add_parser("train", help="train or fine-tune a learned codec (spadegan)")
    tr.add_argument("codec")
    tr.set_defaults(func=None)
    return p


def one_line(err: BenchError) -> str:
    """``<problem>; fix: <fix>`` on one line (line breaks inside either become " | ")."""
    def flat(text: str) -> str:
        return " | ".join(line.strip() for line in str(text).splitlines() if line.strip())

    return flat(err.problem) + (f"; fix: {flat(err.fix)}" if err.fix else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "train" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.command == "train":
            return cmd_train(args, rest)
        return int(args.func(args) or 0)
    except BenchError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return err.exit_code
    except sqlite3.Error as err:  # raised outside Store's own methods (e.g. the result cache's tables)
        from .store import store_error

        store_err = store_error(err, Path(args.out) / "bench.sqlite")
        print(f"error: {one_line(store_err)}", file=sys.stderr)
        return store_err.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished rows are stored; re-run the same command to resume", file=sys.stderr)
        return INTERRUPTED_EXIT
    except OSError as err:  # a file the command could not read or write
        where = f" {err.filename}" if getattr(err, "filename", None) else ""
        print(f"error: cannot access{where}: {err.strerror or err}; fix: check the path and its permissions"
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


if __name__ == "__main__":
    sys.exit(main())
