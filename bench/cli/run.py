"""``bench run`` and ``bench sweep``: evaluate codecs (or a codec's checkpoints) over a dataset."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from bench.cli.common import (
    Parser,
    add_log_options,
    csv_list,
    delta_tolerances,
    finite_float,
    new_store,
    parse_params,
    parse_rates,
    positive,
    store_path,
    warn_skip,
)
from bench.cli.results import print_report
from bench.errors import ConfigError


def run_config(args: argparse.Namespace) -> Any:
    """The RunConfig of ``bench run`` (and ``bench sweep``) arguments, every one checked
    before a store is opened."""
    from bench.execution.runner import RunConfig
    from bench.registry import catalog

    # every argument is checked before the store is opened (no empty bench.sqlite for a typo)
    positive(args.limit, "--limit", "images")
    positive(args.workers, "--workers", "worker processes")
    positive(args.batch_size, "--batch-size", "images per metric batch")
    positive(args.chunk, "--chunk", "images per Ray shard")
    from bench.execution.guard import check_timeout

    timeout = check_timeout(args.timeout, "--timeout")
    codec_names = csv_list(args.codecs)
    if not codec_names:
        raise ConfigError(f"--codecs {args.codecs!r} names no codec", "e.g. --codecs jpeg2000,webp (or all)")
    rates = parse_rates(args.rates, codec_names)
    params = parse_params(args.param)
    store_path(args)
    if args.offline:
        os.environ["BENCH_OFFLINE"] = "1"  # inherited by worker processes and Ray shards
    # the originals' features and segmentations are cached beside the store unless told otherwise
    os.environ.setdefault("BENCH_CACHE_DIR", str(Path(args.out) / "cache"))

    metric_params = {name: params.pop(name) for name in list(params) if name in catalog.registry("metric")}
    dataset_params = dict(params.pop(args.dataset, {}))
    segmenter = params.pop("segmenter", {}) if args.semantics == "segmenter" else None
    if args.root:
        dataset_params["root"] = args.root
    if getattr(args, "split", None):
        if dataset_params.get("split", args.split) != args.split:
            raise ConfigError(f"--split {args.split} and --param {args.dataset}.split={dataset_params['split']} differ",
                              "give the split once")
        dataset_params["split"] = args.split
    return RunConfig(
        dataset=args.dataset,
        codecs=[*codec_names],
        metrics=csv_list(args.metrics),
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
        timeout=0.0 if args.timeout is not None and timeout is None else timeout,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from bench import api

    config = run_config(args)
    executor = None
    if args.executor == "ray":
        from bench.execution.ray_executor import RayExecutor

        executor = RayExecutor(address=args.address, chunk=args.chunk, batch_size=args.batch_size,
                               gpus_per_task=args.gpus_per_task, timeout=config.timeout)
    elif args.gpus_per_task is not None:
        raise ConfigError("--gpus-per-task applies to Ray shards", "add --executor ray, or drop --gpus-per-task")

    with new_store(args) as store:
        run_id = api.run(config, store, progress=not args.quiet, on_skip=warn_skip, executor=executor,
                         log=args.log, step=args.step)
        print(f"run {run_id}: {store.count(run_id)} rows in {store.path}")
        from bench.execution.runner import require_some_ok

        require_some_ok(store, run_id)  # exit 8 when nothing was coded and measured
        if not args.no_report:
            return print_report(store, run_id, Path(args.out) / run_id)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Evaluate every checkpoint matching --checkpoints (one tagged run each), write the
    metric-vs-step table and figure, and gate the newest checkpoint (exit 6 on a regression)."""
    from bench.analysis.checkpoints import find_checkpoints
    from bench.analysis.compare import REGRESSION_EXIT
    from bench.analysis.sweep import (
        SweepResult,
        check_references,
        gate,
        run_sweep,
        sweep_tables,
        write_outputs,
    )

    args.codecs = args.codec
    config = run_config(args)
    checkpoints, axis = find_checkpoints(args.checkpoints, args.step_pattern)
    metrics = csv_list(args.metric) if args.metric else None
    delta_tolerance = delta_tolerances(args.delta_tolerance)
    with new_store(args) as store:
        check_references(store, args.codec, gate=args.gate, anchor=args.anchor)
        run_sweep(config, args.codec, checkpoints, store, axis=axis, checkpoint_param=args.checkpoint_param,
                  log=args.log, progress=not args.quiet, on_skip=warn_skip)
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


def _evaluation_options() -> argparse.ArgumentParser:
    """The options ``run`` and ``sweep`` share: what is evaluated, on which data, how it is measured."""
    from bench.execution.settings import DEFAULT_BATCH_SIZE

    e = Parser(add_help=False)
    e.add_argument("--dataset", required=True)
    e.add_argument("--root", help="dataset root folder (overrides card and env)")
    e.add_argument("--split", help="dataset split (cityscapes: train | val | test; coco: val2017 | train2017; "
                   "default: the card's); recorded in the run's dataset protocol")
    e.add_argument("--protocol", help="a named protocol of the dataset's card (cityscapes: sqgan, spic, iwai, "
                   "native; coco: iwai, native): resolution, resampling, classes, senders' labels, mIoU "
                   "averaging; recorded and part of the run id (default: the card's params, 'card')")
    e.add_argument("--rates", action="append",
                   help="'v1,v2' for every codec or 'codec=v1,v2' (repeatable; default: the card's rate points)")
    e.add_argument("--metrics", default="all", help="comma-separated metric names, or 'all' (default)")
    e.add_argument("--limit", type=int, help="only the first N images")
    e.add_argument("--param", action="append",
                   help="NAME.KEY=VALUE for a codec, a metric or the dataset, e.g. fid.patch=256 (repeatable)")
    e.add_argument("--semantics", choices=["ground-truth", "segmenter"], default="ground-truth",
                   help="label maps for semantic codecs' senders: the dataset's, or a segmenter's on the "
                        "original (--param segmenter.name=espnetv2 --param segmenter.scale=2.0 …); recorded")
    e.add_argument("--weights-dir", help="folder searched (recursively) for metric network and codec weights")
    e.add_argument("--offline", action="store_true",
                   help="never download missing weights (also $BENCH_OFFLINE=1); by default the weights of the "
                        "asked metrics and codecs are fetched into $BENCH_DATA_DIR (mirror: $BENCH_MIRROR)")
    e.add_argument("--allow-random-weights", action="store_true",
                   help="smoke tests only: run metric networks with random weights, marked as such")
    e.add_argument("--device", help="cpu, cuda, cuda:1 … (default: CUDA when available)")
    e.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"metric-network batch (default {DEFAULT_BATCH_SIZE}; results do not depend on it)")
    e.add_argument("--timeout", metavar="SECONDS",
                   help="seconds one coding (encode + decode of one image) may take; past it the row is "
                        "recorded as failed (default: the card's timeout:, else 600; 0: no limit)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_log_options(e)
    return e


def add_parsers(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    from bench.analysis.tolerance import DEFAULT_TOLERANCE

    parents = [*common, _evaluation_options()]
    r = sub.add_parser("run", parents=parents, help="run codecs × rates over a dataset and report")
    r.add_argument("--codecs", required=True, help="comma-separated codec names, or 'all'")
    r.add_argument("--tag", help="label that makes this a separate run")
    r.add_argument("--retry-failed", action="store_true", help="recompute rows recorded as failed")
    r.add_argument("--workers", type=int, help="codec worker processes (default: one per core "
                   "when enough codings can run in parallel to repay starting them, else none)")
    r.add_argument("--no-cache", action="store_true", help="do not reuse results cached by content")
    r.add_argument("--keep-reconstructions", action="store_true",
                   help="store reconstructions (PNG) so that adding a metric later needs no re-encoding")
    r.add_argument("--executor", choices=["local", "ray"], default="local")
    r.add_argument("--address", help="Ray cluster address (default: start a local one)")
    r.add_argument("--chunk", type=int, default=16, help="images per Ray shard")
    r.add_argument("--gpus-per-task", type=finite_float, default=None,
                   help="GPUs a Ray shard that runs a network asks for on a cluster with GPUs "
                        "(default 1; 0.25: four share one; 0: none)")
    r.add_argument("--no-report", action="store_true")
    r.add_argument("--step", type=int, help="--log: the step the results are logged at (default 0)")
    r.set_defaults(func=cmd_run)

    sw = sub.add_parser("sweep", parents=parents,
                        help="evaluate every checkpoint of a training run (one tagged run each), plot metrics "
                             "against step and gate the newest (exit 6 on a regression)")
    sw.add_argument("--codec", required=True, help="the codec whose checkpoints are swept (e.g. sqgan)")
    sw.add_argument("--checkpoints", required=True, help="glob of checkpoint files, quoted: 'runs/exp1/*.ckpt'")
    sw.add_argument("--checkpoint-param", default="checkpoint",
                    help="codec param that takes the file (default checkpoint)")
    sw.add_argument("--step-pattern", help="regex with one group (or a group named step) giving the step in a "
                                           "file name (default: Lightning's step=N / epoch=N, else the "
                                           "checkpoint's global_step / epoch)")
    sw.add_argument("--anchor", help="run id: BD-rate of every checkpoint against it, per step (table and figure)")
    sw.add_argument("--gate", help="best | first | RUN: exit 6 when the newest checkpoint regresses against the "
                                   "best earlier checkpoint (per metric), the first one, or run RUN")
    sw.add_argument("--metric", help="metrics gated and tabulated (default: psnr,msssim_db,lpips,fid,miou_* present)")
    sw.add_argument("--tolerance", type=finite_float, default=DEFAULT_TOLERANCE,
                    help=f"BD-rate regression tolerance in %% (default {DEFAULT_TOLERANCE:g})")
    sw.add_argument("--delta-tolerance", action="append", help="METRIC=VALUE still counted as equal (repeatable)")
    sw.add_argument("--dest", help="folder for the table and figure (default: results/sweep-<codec>/)")
    sw.add_argument("--retry-failed", action="store_true",
                    help="recompute failed rows, also of a checkpoint that could not be used before")
    sw.set_defaults(func=cmd_sweep, tag=None, workers=None, no_cache=False,
                    keep_reconstructions=False, chunk=None)
