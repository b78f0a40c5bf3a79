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
    from . import catalog
    from .runner import RunConfig, execute

    # the originals' features and segmentations are cached beside the store unless told otherwise
    os.environ.setdefault("BENCH_CACHE_DIR", str(Path(args.out) / "cache"))

    params = parse_params(args.param)
    metric_params = {name: params.pop(name) for name in list(params) if name in catalog.registry("metric")}
    dataset_params = dict(params.pop(args.dataset, {}))
    segmenter = params.pop("segmenter", {}) if args.semantics == "segmenter" else None
    if args.root:
        dataset_params["root"] = args.root
    config = RunConfig(
        dataset=args.dataset,
        codecs=_csv(args.codecs),
        metrics=_csv(args.metrics),
        rates=parse_rates(args.rates),
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
    executor = None
    if args.executor == "ray":
        from .ray_executor import RayExecutor

        executor = RayExecutor(address=args.address, chunk=args.chunk, batch_size=args.batch_size)

    def warn(name: str, reason: str) -> None:
        print(f"warning: skipping {name}: {reason}", file=sys.stderr)

    with _store(args) as store:
        run_id = execute(config, store, progress=not args.quiet, on_skip=warn, executor=executor)
        print(f"run {run_id}: {store.count(run_id)} rows in {store.path}")
        if not args.no_report:
            return _report(store, run_id, Path(args.out) / run_id)
    return 0


def _bootstrap(args: argparse.Namespace, force: bool = False) -> Any:
    """The --ci settings as a bench.stats.Bootstrap, or None without --ci (and not ``force``)."""
    if not (force or getattr(args, "ci", False)):
        return None
    from .stats import Bootstrap

    if args.ci_resamples < 10:
        raise BenchError(f"--ci-resamples {args.ci_resamples} is too few", "use 10 or more (default 1000)")
    return Bootstrap(resamples=args.ci_resamples, seed=args.ci_seed,
                     heavy_resamples=min(args.ci_resamples, args.ci_heavy_resamples))


def _add_ci_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--ci", action="store_true", help=f"{what} 95%% bootstrap intervals over images (seeded)")
    p.add_argument("--ci-resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--ci-heavy-resamples", type=int, default=100,
                   help="resamples for FID/KID and other non-sum metrics (default 100)")
    p.add_argument("--ci-seed", type=int, default=0, help="bootstrap seed (default 0)")


def _report(store: Any, run_id: str, out_dir: Path, boot: Any = None) -> int:
    from .report import load_run, render_console, summarise, write_report

    loaded = load_run(store, run_id)  # the rows, read once for the console and the files
    summary = summarise(store, run_id, loaded)
    if boot is not None:
        from .report.intervals import add_intervals

        summary = add_intervals(summary, store, run_id, loaded, boot)
    paths = write_report(store, run_id, out_dir, summary, loaded)
    print(render_console(summary))
    print(f"report: {out_dir} ({len(paths)} files)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    with _store(args) as store:
        run = store.run(args.run)
        if args.html:
            return _html_report(args, store, [run["run_id"]] + [store.run(r)["run_id"] for r in args.more_runs])
        if args.more_runs:
            raise BenchError("several runs make one report only with --html", "add --html, or report one run")
        return _report(store, run["run_id"], Path(args.dest) if args.dest else Path(args.out) / run["run_id"],
                       _bootstrap(args))


def _html_report(args: argparse.Namespace, store: Any, run_ids: list[str]) -> int:
    from .report.html import HtmlOptions, write_html

    options = HtmlOptions(bpp=args.bpp, image_id=args.image, crop=args.crop, crops=not args.no_crops,
                          codec_params=parse_params(args.param), ci=_bootstrap(args))
    dest = Path(args.dest) if args.dest else Path(args.out) / run_ids[0]
    path = write_html(store, run_ids, dest / "report.html", options)
    print(f"html report: {path}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """List runs. A tagged run shows its codecs as ``name@tag``; a codec that recorded a
    checkpoint hash (``params.checkpoint_sha256``) shows ``[ckpt <first 8 hex>]``."""
    import datetime

    from .compare import run_codec_labels

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


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import REGRESSION_EXIT, compare, render_text

    delta_tol: dict[str, float] = {}
    for item in args.delta_tolerance or []:
        key, _, value = item.partition("=")
        try:
            delta_tol[key.strip()] = float(value)
        except ValueError:
            raise BenchError(f"--delta-tolerance {item!r} is not METRIC=VALUE",
                             "e.g. --delta-tolerance psnr=0.1") from None
    with _store(args) as store:
        result = compare(store, args.run_a, args.run_b, metrics=_csv(args.metric) if args.metric else None,
                         codecs=_csv(args.codec) if args.codec else None, anchor=args.anchor, test=args.test,
                         tolerance=args.tolerance, delta_tolerance=delta_tol, method=args.method,
                         ci=_bootstrap(args) or (_bootstrap(args, force=True) if args.gate == "significant" else None),
                         rate_map=_rate_map(args.pair_rate))
    print(render_text(result))
    if args.csv:
        dest = Path(args.csv)
        dest.mkdir(parents=True, exist_ok=True)
        result.metrics.to_csv(dest / "compare_bd.csv", index=False)
        result.points.to_csv(dest / "compare_points.csv", index=False)
        if result.paired is not None:
            result.paired.to_csv(dest / "compare_paired.csv", index=False)
        print(f"tables: {dest}/compare_bd.csv, compare_points.csv" + (", compare_paired.csv" if result.paired is not None else ""))
    return REGRESSION_EXIT if result.gate(args.gate) and not args.no_gate else 0


def _rate_map(items: Sequence[str] | None) -> dict[str, str]:
    """--pair-rate A=B items as {rate of run A: rate of run B}."""
    out = {}
    for item in items or []:
        a, sep, b = item.partition("=")
        if not sep or not a.strip() or not b.strip():
            raise BenchError(f"--pair-rate {item!r} is not RATE_A=RATE_B", "e.g. --pair-rate 50=45")
        out[a.strip()] = b.strip()
    return out


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_run

    with _store(args) as store:
        run = store.run(args.run)
        path = Path(args.output) if args.output else Path(args.out) / run["run_id"] / f"rows.{args.format}"
        export_run(store, run["run_id"], path, args.format)
        print(f"exported {store.count(run['run_id'])} rows of {run['run_id']} to {path}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    import warnings

    from .figures import PRESETS, ProtocolWarning, write_figure

    names = list(PRESETS) if args.preset == "all" else _csv(args.preset)
    with _store(args) as store:
        dest = Path(args.dest) if args.dest else Path(args.out) / "figures"
        for name in names:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ProtocolWarning)
                paths = write_figure(name, store, args.runs or ["latest"], dest, ssm=args.ssm_bpp,
                                     ci=_bootstrap(args))
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
    r.add_argument("--no-report", action="store_true")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="tables and curves of a run")
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
    _add_ci_args(rep, "tables and curves with")
    rep.set_defaults(func=cmd_report)

    rs = sub.add_parser("runs", help="list runs in the store (tagged codecs shown as name@tag)")
    rs.add_argument("--dataset")
    rs.add_argument("--codec")
    rs.add_argument("--tag")
    rs.set_defaults(func=cmd_runs)

    cmp_ = sub.add_parser("compare", help="BD-rate / BD-metric and per-rate-point deltas of run B against run A; "
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
    cmp_.add_argument("--gate", choices=["tolerance", "significant"], default="tolerance",
                      help="exit 6 on a regression beyond the tolerances (default), or only when its 95%% "
                           "bootstrap interval excludes 0 ('significant'; implies --ci)")
    cmp_.add_argument("--pair-rate", action="append",
                      help="RATE_A=RATE_B: pair these differently labelled rate points in the paired "
                           "differences (with --ci or --gate significant; repeatable)")
    _add_ci_args(cmp_, "paired differences and BD intervals with")
    cmp_.set_defaults(func=cmd_compare)

    ex = sub.add_parser("export", help="one tidy row per image x codec x rate (csv, parquet, json)")
    ex.add_argument("run", nargs="?", default="latest")
    ex.add_argument("--format", default="csv", choices=["csv", "parquet", "json"])
    ex.add_argument("--output", "-o", help="file to write (default: results/<run-id>/rows.<format>)")
    ex.set_defaults(func=cmd_export)

    fg = sub.add_parser("figures", help="paper figure layouts (sqgan-fig12, spic-fig4, iwai-fig8) as PDF and PNG")
    fg.add_argument("runs", nargs="*", help="runs drawn together (default: latest)")
    fg.add_argument("--preset", required=True, help="preset name(s), comma-separated, or 'all'")
    fg.add_argument("--dest", help="output folder (default: results/figures/)")
    fg.add_argument("--ssm-bpp", type=float, help="spic-fig4: bpp of the lossless semantic map (dotted line); "
                                                  "default: found in the runs' byte parts")
    _add_ci_args(fg, "error bars of")
    fg.set_defaults(func=cmd_figures)

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
