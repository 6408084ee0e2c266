"""The benchmark's command line: options, quick and full defaults, and ``main``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import load
from benchmarks.engines import worker_main
from benchmarks.report import render_load_markdown, render_markdown, write_results
from benchmarks.settings import (
    DEFAULT_CACHE,
    DEFAULT_MODEL,
    DEFAULT_OUT,
    DEFAULT_RUN,
    DEFAULT_TRIED,
    ENGINES,
    FULL,
    LOAD_TIME_CAP,
    QUICK,
)
from benchmarks.suite import run_benchmark

if TYPE_CHECKING:
    pass


def _engines(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ENGINES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown engine(s) {unknown}; choose from {', '.join(ENGINES)}"
        )
    return [name for name in ENGINES if name in names]


def _levels(value: str) -> list[int]:
    try:
        levels = [int(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {value!r}") from exc
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be integers ≥ 1")
    return levels


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options; sizes left unset take the ``--quick`` or full defaults."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Accuracy, speed and memory of khabar's engines side by side.",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        metavar="DIR",
        help="exported model directory (default: models/default)",
    )
    parser.add_argument(
        "--run",
        type=Path,
        default=DEFAULT_RUN,
        metavar="DIR",
        help="training run for torch-fp32 (default: runs/default)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="YAML",
        help="recipe of the held-out split (default: the one in khabar.json)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="data root of the recipe's corpora (default: $KHABAR_DATA or ../shared/data)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="where the .md and .json go (default: benchmarks/results)",
    )
    parser.add_argument(
        "--engines",
        type=_engines,
        default=list(ENGINES),
        help=f"comma-separated subset of {','.join(ENGINES)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small samples and short time caps (under 2 minutes)"
    )
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="B",
        help="windows per encoder call (default: the predictor's)",
    )
    parser.add_argument(
        "--articles",
        type=int,
        default=None,
        metavar="N",
        help="ANT test articles sampled (default 300; quick 40)",
    )
    parser.add_argument(
        "--sentences",
        type=int,
        default=None,
        metavar="N",
        help="ANERcorp test sentences (default all; quick 100)",
    )
    parser.add_argument(
        "--single-calls",
        type=int,
        default=None,
        metavar="N",
        help="one-article calls per latency series (default 100; quick 10)",
    )
    parser.add_argument(
        "--http-requests",
        type=int,
        default=None,
        metavar="N",
        help="requests per concurrency level (default 300; quick 48)",
    )
    parser.add_argument(
        "--concurrency",
        type=_levels,
        default=[1, 8, 32],
        metavar="LIST",
        help="HTTP concurrency levels (default 1,8,32)",
    )
    parser.add_argument(
        "--time-cap",
        type=float,
        default=None,
        metavar="S",
        help="seconds per measured phase, checked between calls (default 90; quick 6)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        metavar="N",
        help="documents per call in the batch phase (default 64; quick 16)",
    )
    parser.add_argument("--seed", type=int, default=13, help="sampling seed (default 13)")
    parser.add_argument("--machine", default=None, help="machine name in the file names")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        metavar="DIR",
        help="cache of the held-out split (default: benchmarks/scratch)",
    )
    parser.add_argument(
        "--tried",
        type=Path,
        default=DEFAULT_TRIED,
        metavar="FILE",
        help="Markdown log of speed experiments, copied into the report "
        "(default: benchmarks/speedups.md)",
    )
    parser.add_argument(
        "--load",
        action="store_true",
        help="reliability mode: cost of batch-mate independence and a long loopback run",
    )
    parser.add_argument(
        "--load-requests",
        type=int,
        default=None,
        metavar="N",
        help="requests of the loopback run in --load mode (default 10000; quick 500)",
    )
    parser.add_argument(
        "--load-concurrency",
        type=int,
        default=32,
        metavar="C",
        help="clients of the loopback run in --load mode (default 32)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        metavar="N",
        help="alternating rounds of the in-process comparison in --load mode (default 3)",
    )
    parser.add_argument("--no-cache", action="store_true", help="always reload the corpora")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def resolve_options(options: argparse.Namespace) -> argparse.Namespace:
    """Fill sizes the user left unset from the quick or full defaults."""
    from serving.predictor import DEFAULT_BATCH_SIZE

    defaults = QUICK if options.quick else FULL
    for key, value in defaults.items():
        if getattr(options, key) is None:
            setattr(options, key, value)
    if getattr(options, "load_requests", None) is None:
        options.load_requests = load.QUICK_LOAD_REQUESTS if options.quick else load.LOAD_REQUESTS
    if getattr(options, "rounds", None) is None:
        options.rounds = load.QUICK_ROUNDS if options.quick else load.ROUNDS
    if (
        getattr(options, "load", False)
        and not options.quick
        and options.time_cap == FULL["time_cap"]
    ):
        # A long run is the point of the load mode: the cap only guards against a hang.
        options.time_cap = LOAD_TIME_CAP
    if options.batch_size is None:
        options.batch_size = DEFAULT_BATCH_SIZE
    options.model = options.model.resolve()
    options.run = options.run.resolve()
    return options


def check_options(options: argparse.Namespace) -> str | None:
    """What is wrong with the resolved options, or ``None``."""
    for key in (
        "articles",
        "single_calls",
        "http_requests",
        "chunk_size",
        "batch_size",
        "threads",
        "load_requests",
        "load_concurrency",
        "rounds",
    ):
        if getattr(options, key) < 1:
            return f"--{key.replace('_', '-')} must be at least 1"
    if options.sentences is not None and options.sentences < 0:
        return "--sentences must not be negative"
    if options.time_cap <= 0:
        return "--time-cap must be positive"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the Markdown report, write ``.md`` and ``.json``.

    Returns:
        0 when every chosen engine was measured or skipped with a reason, 1 when one
        failed, 2 when the run could not start (bad model directory or recipe).
    """
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.worker is not None:
        return worker_main(options.worker)
    options = resolve_options(options)
    problem = check_options(options)
    if problem is not None:
        parser.error(problem)
    from serving.errors import KhabarError

    if options.load:
        try:
            load_results = load.run_load(options)
        except KhabarError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        markdown = render_load_markdown(load_results)
        markdown_path, raw = write_results(load_results, options.out, markdown, "load")
        print(markdown)
        print(f"written: {markdown_path} and {raw}", file=sys.stderr)
        return 0 if load_results["loopback"].get("status") == "ok" else 1

    try:
        results = run_benchmark(options)
    except KhabarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if options.tried.is_file():
        results["tried"] = options.tried.read_text(encoding="utf-8")
    markdown = render_markdown(results)
    markdown_path, raw = write_results(results, options.out, markdown)
    print(markdown)
    print(f"written: {markdown_path} and {raw}", file=sys.stderr)
    failed = [n for n, e in results["engines"].items() if e.get("status") == "error"]
    return 1 if failed else 0
