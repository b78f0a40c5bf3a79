"""The ``bench`` command line. The only place that turns errors into exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .errors import BenchError

log = logging.getLogger("bench")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_rates(items: Sequence[str] | None) -> dict[str, list[str]]:
    """``--rates 10,20`` (every codec) or ``--rates jpeg=10,20 --rates webp=50``."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        codec, sep, values = item.partition("=")
        if sep:
            out[codec.strip()] = _csv(values)
        else:
            out["*"] = _csv(item)
    return out


def parse_params(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``--param sqgan.checkpoint=/x.ckpt`` → {"sqgan": {"checkpoint": "/x.ckpt"}} (YAML-typed values)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        name, dot, param = key.partition(".")
        if not sep or not dot:
            raise BenchError(f"--param {item!r} is not NAME.KEY=VALUE", "e.g. --param sqgan.checkpoint=/path/last.ckpt")
        out.setdefault(name, {})[param] = yaml.safe_load(value)
    return out


def _store(args: argparse.Namespace):
    from .store import Store

    return Store(Path(args.out) / "bench.sqlite")


# -- commands ---------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .runner import RunConfig, execute

    dataset_params = dict(parse_params(args.param).pop(args.dataset, {}))
    if args.root:
        dataset_params["root"] = args.root
    config = RunConfig(
        dataset=args.dataset,
        codecs=_csv(args.codecs),
        metrics=_csv(args.metrics),
        rates=parse_rates(args.rates),
        limit=args.limit,
        dataset_params=dataset_params,
        codec_params=parse_params(args.param),
        metric_options={"weights_dir": args.weights_dir, "allow_random_weights": args.allow_random_weights,
                        "device": args.device},
        retry_failed=args.retry_failed,
        tag=args.tag,
    )

    def warn(name: str, reason: str) -> None:
        print(f"warning: skipping {name}: {reason}", file=sys.stderr)

    with _store(args) as store:
        run_id = execute(config, store, progress=not args.quiet, on_skip=warn)
        print(f"run {run_id}: {store.count(run_id)} rows in {store.path}")
        if not args.no_report:
            return _report(store, run_id, Path(args.out) / run_id)
    return 0


def _report(store: Any, run_id: str, out_dir: Path) -> int:
    from .report import render_console, summarise, write_report

    paths = write_report(store, run_id, out_dir)
    print(render_console(summarise(store, run_id)))
    print(f"report: {out_dir} ({len(paths)} files)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    with _store(args) as store:
        run = store.run(args.run)
        return _report(store, run["run_id"], Path(args.dest) if args.dest else Path(args.out) / run["run_id"])


def cmd_runs(args: argparse.Namespace) -> int:
    import datetime

    with _store(args) as store:
        runs = store.runs()
        for run in runs:
            meta, cfg = run["meta"], run["config"]
            if args.dataset and cfg.get("dataset") != args.dataset:
                continue
            if args.codec and args.codec not in meta.get("codecs", {}):
                continue
            when = datetime.datetime.fromtimestamp(run["updated"]).strftime("%Y-%m-%d %H:%M")
            print(f"{run['run_id']}  {when}  {run['status']:8s}  {store.count(run['run_id']):6d} rows  "
                  f"{cfg.get('dataset')}  {','.join(meta.get('codecs', {}))}")
        if not runs:
            print(f"no runs in {store.path}")
    return 0


def _availability(obj: Any) -> tuple[bool, str]:
    missing = [r for r in obj.requirements() if not r.found]
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
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import report

    print(report(weights_dir=args.weights_dir))
    return 0


def cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    if args.codec != "spadegan":
        raise BenchError(f"no training entry point for {args.codec!r}", "train spadegan, or use the codec's own repo")
    from .codecs.spadegan.train import main as train_main

    return int(train_main(rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="Evaluation harness for semantic image compression.")
    p.add_argument("--version", action="version", version=f"bench {__version__}")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--out", default=os.environ.get("BENCH_RESULTS", "results"),
                   help="results folder holding bench.sqlite and reports (default: results/)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run codecs × rates over a dataset and report")
    r.add_argument("--codecs", required=True, help="comma-separated codec names, or 'all'")
    r.add_argument("--dataset", required=True)
    r.add_argument("--root", help="dataset root folder (overrides card and env)")
    r.add_argument("--rates", action="append", help="'v1,v2' for every codec or 'codec=v1,v2' (repeatable)")
    r.add_argument("--metrics", default="all", help="comma-separated metric names, or 'all' (default)")
    r.add_argument("--limit", type=int, help="only the first N images")
    r.add_argument("--param", action="append", help="NAME.KEY=VALUE for a codec or the dataset (repeatable)")
    r.add_argument("--weights-dir", help="folder searched for metric network weights")
    r.add_argument("--allow-random-weights", action="store_true",
                   help="smoke tests only: run metric networks with random weights, marked as such")
    r.add_argument("--device", help="cpu, cuda, cuda:1 … (default: CUDA when available)")
    r.add_argument("--tag", help="label that makes this a separate run")
    r.add_argument("--retry-failed", action="store_true", help="recompute rows recorded as failed")
    r.add_argument("--no-report", action="store_true")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="tables and curves of a run")
    rep.add_argument("run", nargs="?", default="latest", help="run id or prefix (default: latest)")
    rep.add_argument("--dest", help="output folder (default: results/<run-id>/)")
    rep.set_defaults(func=cmd_report)

    rs = sub.add_parser("runs", help="list runs in the store")
    rs.add_argument("--dataset")
    rs.add_argument("--codec")
    rs.set_defaults(func=cmd_runs)

    ls = sub.add_parser("list", help="registered codecs, datasets or metrics and their availability")
    ls.add_argument("what", choices=["codecs", "datasets", "metrics"])
    ls.set_defaults(func=cmd_list)

    doc = sub.add_parser("doctor", help="what is found and what is missing (binaries, weights, datasets)")
    doc.add_argument("--weights-dir")
    doc.set_defaults(func=cmd_doctor)

    tr = sub.add_parser("train", help="train or fine-tune a learned codec (spadegan)")
    tr.add_argument("codec")
    tr.set_defaults(func=None)
    return p


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
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished rows are stored; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
