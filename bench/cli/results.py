"""Commands that read the store: ``report``, ``runs``, ``compare``, ``export``, ``figures``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.cli.common import (
    RATE_HELP,
    add_ci_args,
    bootstrap,
    csv_list,
    delta_tolerances,
    finite_float,
    open_store,
    parse_params,
    store_path,
)
from bench.cli.terminal import fit
from bench.errors import ConfigError
from bench.modes import RateBasis


def print_report(store: Any, run_id: str, out_dir: Path, boot: Any = None, rate: RateBasis = "real",
                 columns: Sequence[str] | None = None, bold_best: bool = False, width: str = "single") -> int:
    from bench.report import (
        load_run,
        rate_view,
        render_console,
        summarise,
        write_report,
    )

    loaded = load_run(store, run_id, states=boot is not None)  # read once; states only for intervals
    summary = summarise(store, run_id, loaded)
    if boot is not None:
        from bench.report.intervals import add_intervals

        summary = add_intervals(summary, store, run_id, loaded, boot)
    shown = rate_view(summary, rate)
    table = render_console(shown, list(columns) if columns else None)  # a bad --columns fails before writing
    paths = write_report(store, run_id, out_dir, summary, loaded, rate=rate, bold_best=bold_best, width=width)
    print(table)
    print(f"report: {out_dir} ({len(paths)} files)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.storage.atomic import output_dir

    if args.more_runs and not args.html:
        runs = ", ".join(repr(r) for r in [args.run, *args.more_runs])
        raise ConfigError(f"several runs ({runs}) make one report only with --html",
                          "add --html, or report one run (--ci takes no value)")
    boot = bootstrap(args)  # options checked before the store is read
    if args.dest:
        output_dir(args.dest, "--dest folder")
    with open_store(args) as store:  # read-only: the report goes to files, not into the store
        run = store.run(args.run)
        if args.html:
            return _html_report(args, store, [run["run_id"]] + [store.run(r)["run_id"] for r in args.more_runs], boot)
        dest = Path(args.dest) if args.dest else Path(args.out) / run["run_id"]
        output_dir(dest, "report folder", "pass --dest DIR, a folder you can write (the store itself is only read)")
        return print_report(store, run["run_id"], dest, boot, args.rate,
                            csv_list(args.columns) if args.columns else None, args.bold_best, args.width)


def _html_report(args: argparse.Namespace, store: Any, run_ids: list[str], boot: Any = None) -> int:
    from bench.report.html import HtmlOptions, write_html
    from bench.storage.atomic import output_dir

    options = HtmlOptions(bpp=args.bpp, image_id=args.image, crop=args.crop, crops=not args.no_crops,
                          codec_params=parse_params(args.param), ci=boot, rate=args.rate)
    dest = output_dir(Path(args.dest) if args.dest else Path(args.out) / run_ids[0], "--dest folder")
    path = write_html(store, run_ids, dest / "report.html", options)
    print(f"html report: {path}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """List runs, one line each within 100 columns (``-v``: every codec, however long the
    line). A tagged run shows its codecs as ``name@tag``; a codec that recorded a checkpoint
    hash (``params.checkpoint_sha256``) shows ``[ckpt <first 8 hex>]``."""
    import datetime

    from bench.analysis.compare import run_codec_labels

    if not store_path(args).exists():
        print(f"no runs: no run store at {store_path(args)} (start one with `bench run`)")
        return 0
    with open_store(args) as store:
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
            line = (f"{run['run_id']}  {when}  {run['status']:8s}  {store.count(run['run_id']):6d} rows  "
                    f"{cfg.get('dataset')}  tag={meta.get('tag') or '-'}  {','.join(labels.values())}")
            print(line if args.verbose else fit(line, squash=False))
        if not runs:
            print(f"no runs in {store.path}")
        elif not shown:
            print("no run matches the filters")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.analysis.compare import REGRESSION_EXIT, compare
    from bench.report.compare_text import render_text

    delta_tol = delta_tolerances(args.delta_tolerance)
    rate_map = _rate_map(args.pair_rate)
    ci = bootstrap(args, force=args.gate == "significant")
    dest = _csv_dest(args.csv) if args.csv else None
    if args.min_images < 2:
        raise ConfigError(f"--min-images {args.min_images} is too few", "an interval needs 2 or more images "
                          "(default 10)")
    with open_store(args) as store:
        result = compare(store, args.run_a, args.run_b, metrics=csv_list(args.metric) if args.metric else None,
                         codecs=csv_list(args.codec) if args.codec else None, anchor=args.anchor, test=args.test,
                         tolerance=args.tolerance, delta_tolerance=delta_tol, method=args.method,
                         ci=ci, rate_map=rate_map, rate=args.rate, allow_partial=args.allow_partial,
                         min_images=args.min_images)
    print(render_text(result))
    if dest is not None:
        from bench.storage.atomic import write_with

        write_with(dest / "compare_bd.csv", lambda tmp: result.metrics.to_csv(tmp, index=False))
        write_with(dest / "compare_points.csv", lambda tmp: result.points.to_csv(tmp, index=False))
        if result.paired is not None:
            paired = result.paired
            write_with(dest / "compare_paired.csv", lambda tmp: paired.to_csv(tmp, index=False))
        print(f"tables: {dest}/compare_bd.csv, compare_points.csv" + (", compare_paired.csv" if result.paired is not None else ""))
    if args.no_gate:
        return 0
    return REGRESSION_EXIT if result.gate(args.gate) else 0


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
    from bench.storage.atomic import output_dir

    return output_dir(folder, "--csv folder")


def cmd_export(args: argparse.Namespace) -> int:
    from bench.report.export import export_run
    from bench.storage.atomic import output_file

    if args.output:
        output_file(args.output, "export file (-o)")
    with open_store(args) as store:
        run = store.run(args.run)
        path = Path(args.output) if args.output else Path(args.out) / run["run_id"] / f"rows.{args.format}"
        export_run(store, run["run_id"], path, args.format, rate=args.rate)
        print(f"exported {store.count(run['run_id'])} rows of {run['run_id']} to {path}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    import warnings

    from bench.report.figures import PRESETS, ProtocolWarning, write_figures

    names = list(PRESETS) if args.preset == "all" else csv_list(args.preset)
    boot = bootstrap(args)
    with open_store(args) as store:
        dest = Path(args.dest) if args.dest else Path(args.out) / "figures"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ProtocolWarning)
            written = write_figures(names, store, args.runs or ["latest"], dest, ssm=args.ssm_bpp,
                                    ci=boot, rate=args.rate, width=args.width)
        for w in caught:  # a figure drawn from runs of another protocol than its paper's
            print(f"warning: {w.message}", file=sys.stderr)
        for name, paths in written.items():
            print(f"{name}: {', '.join(str(p) for p in paths)}")
    return 0


def add_width_arg(parser: argparse.ArgumentParser, what: str = "") -> None:
    parser.add_argument("--width", choices=["single", "double"], default="single",
                        help=f"{what}figure width: single column (3.5 in, default) or double column (7.16 in)")


def add_parsers(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    from bench.analysis.tolerance import DEFAULT_TOLERANCE, MIN_IMAGES

    rep = sub.add_parser("report", parents=common, help="tables and curves of a run")
    rep.add_argument("run", nargs="?", default="latest", help="run id or prefix (default: latest)")
    rep.add_argument("more_runs", nargs="*", help="further runs drawn on the same page (--html only)")
    rep.add_argument("--dest", help="output folder (default: results/<run-id>/)")
    add_width_arg(rep, "rd_<metric> curves: ")
    rep.add_argument("--html", action="store_true",
                     help="one self-contained report.html (tables, curves, IoU bars, recomputed crops)")
    rep.add_argument("--bpp", type=finite_float, help="--html: bpp for IoU bars and crops (default: median rate point)")
    rep.add_argument("--image", help="--html: image id for the crops (default: first fully evaluated image)")
    rep.add_argument("--crop", type=int, default=192, help="--html: side of the centre crop in pixels")
    rep.add_argument("--no-crops", action="store_true", help="--html: do not recompute reconstructions")
    rep.add_argument("--param", action="append", help="--html: NAME.KEY=VALUE to rebuild a codec (as for run)")
    rep.add_argument("--rate", choices=["real", "paper"], default="real", help=RATE_HELP)
    rep.add_argument("--columns", help="console table: comma-separated column keys (e.g. psnr,psnr_of_mean_mse,"
                                       "n_ok) or 'all' (default: one headline column per metric, within 100 "
                                       "columns; summary.csv keeps every column)")
    rep.add_argument("--bold-best", action="store_true",
                     help="summary.tex: the best value of each metric per rate point in bold")
    add_ci_args(rep, "tables and curves with")
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
    cmp_.add_argument("--tolerance", type=finite_float, default=DEFAULT_TOLERANCE,
                      help=f"BD-rate regression tolerance in %% (default {DEFAULT_TOLERANCE:g})")
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
    cmp_.add_argument("--allow-partial", action="store_true",
                      help="compare runs that did not finish every image, on the images both finished "
                           "(default: refuse, exit 5)")
    cmp_.add_argument("--min-images", type=int, default=MIN_IMAGES,
                      help=f"fewest images an interval must come from for --gate significant to judge it "
                           f"(default {MIN_IMAGES}; fewer: exit 5)")
    cmp_.add_argument("--pair-rate", action="append",
                      help="RATE_A=RATE_B: pair these differently labelled rate points in the paired "
                           "differences (with --ci or --gate significant; repeatable)")
    add_ci_args(cmp_, "paired differences and BD intervals with")
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
    fg.add_argument("--ssm-bpp", type=finite_float, help="spic-fig4: bpp of the lossless semantic map (dotted line); "
                                                  "default: found in the runs' byte parts")
    fg.add_argument("--rate", choices=["real", "paper"],
                    help="x axis: real bpp or paper formula rate (default: the preset's; sqgan-fig12: paper)")
    add_width_arg(fg)
    add_ci_args(fg, "error bars of")
    fg.set_defaults(func=cmd_figures)

