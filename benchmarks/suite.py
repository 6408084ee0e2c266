"""One benchmark run: prechecks, a worker per engine, the HTTP engine, ratios and targets."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.engines import run_worker
from benchmarks.http_load import measure_http
from benchmarks.machine import machine_info, versions
from benchmarks.settings import FINE_TUNED, HTTP_INT8, ONNX_VARIANTS, TORCH_FP32
from benchmarks.stats import compute_ratios, targets
from benchmarks.workload import config_of, held_out, sample_workload, text_predictor, workload_stats

if TYPE_CHECKING:
    pass


def precheck(engine: str, options: argparse.Namespace) -> str | None:
    """Why ``engine`` cannot run here, checked before a worker is started; else ``None``."""
    from serving.metadata import ModelMetadata

    metadata = ModelMetadata.load(options.model)
    if engine == TORCH_FP32 and not options.run.is_dir():
        return f"no training run at {options.run} (pass --run DIR)"
    if engine in ONNX_VARIANTS or engine == HTTP_INT8:
        variant = ONNX_VARIANTS.get(engine, metadata.default_variant)
        file_name = metadata.onnx_files.get(variant)
        if file_name is None or not (options.model / file_name).is_file():
            return f"{options.model} has no {variant} ONNX file"
    return None


def phase_events(progress: Any, task: Any) -> Callable[..., None]:
    """A run's event callback that shows its ``progress`` events on the ``task`` bar."""

    def on_event(**event: Any) -> None:
        if event.get("event") == "progress":
            progress.update(
                task,
                description=f"  {event.get('phase', '')}",
                completed=event.get("done", 0),
                total=max(1, event.get("total", 1)),
                visible=True,
            )

    return on_event


def progress_bar(quiet: bool) -> Any:
    """A rich progress display on stderr (silent when ``quiet``)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
        transient=False,
    )


def run_benchmark(options: argparse.Namespace) -> dict[str, Any]:
    """Measure the chosen engines and return every raw figure.

    Args:
        options: Parsed command-line options with mode defaults filled in.

    Returns:
        The results: settings, machine, versions, workload, engines, ratios, targets.
    """
    from serving.errors import DataError
    from serving.metadata import ModelMetadata

    started = time.perf_counter()
    ModelMetadata.load(options.model)  # a bad model directory stops the run here
    machine = machine_info(options.machine)
    settings = {
        "quick": options.quick,
        "model_dir": str(options.model),
        "run_dir": str(options.run),
        "config": str(options.config) if options.config else "the model's khabar.json",
        "engines": list(options.engines),
        "threads": options.threads,
        "batch_size": options.batch_size,
        "articles": options.articles,
        "sentences": options.sentences,
        "single_calls": options.single_calls,
        "http_requests": options.http_requests,
        "concurrency": list(options.concurrency),
        "time_cap": options.time_cap,
        "seed": options.seed,
        "chunk_size": options.chunk_size,
    }
    results: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "started_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine,
        "settings": settings,
        "engines": {},
    }
    progress = progress_bar(options.quiet)
    with progress, tempfile.TemporaryDirectory(prefix="khabar-bench-") as tmp:
        scratch = Path(tmp)
        overall = progress.add_task("workload", total=len(options.engines) + 1)
        phase = progress.add_task("", total=1, visible=False)

        on_event = phase_events(progress, phase)
        config = config_of(options.model, options.config, options.data)
        cache_dir = None if options.no_cache else options.cache_dir
        data = held_out(config, cache_dir)
        if not data["articles"]:
            raise DataError("the recipe's held-out split has no ANT test articles to measure")
        workload = sample_workload(data, options.articles, options.sentences, options.seed)
        stats = workload_stats(
            text_predictor(options.model), workload, options.batch_size, options.chunk_size
        )
        stats["held_out"] = {
            "articles": len(data["articles"]),
            "sentences": len(data["sentences"]),
            "from_cache": data["from_cache"],
        }
        results["workload"] = stats
        workload_path = scratch / "workload.json"
        workload_path.write_text(json.dumps(workload, ensure_ascii=False), encoding="utf-8")
        progress.advance(overall)

        child_timeout = 5 * options.time_cap + (150 if options.quick else 900)
        for engine in options.engines:
            progress.update(overall, description=engine)
            progress.update(phase, completed=0, total=1, visible=False)
            reason = precheck(engine, options)
            if reason is not None:
                results["engines"][engine] = {"status": "skipped", "note": reason}
            elif engine == HTTP_INT8:
                texts = [a["text"] for a in workload["articles"]]
                results["engines"][engine] = measure_http(options, texts, scratch, on_event)
            else:
                spec = {
                    "engine": engine,
                    "model_dir": str(options.model),
                    "run_dir": str(options.run),
                    "workload": str(workload_path),
                    "threads": options.threads,
                    "batch_size": options.batch_size,
                    "single_calls": options.single_calls,
                    "time_cap": options.time_cap,
                    "chunk_size": options.chunk_size,
                    "seed": options.seed,
                    "accuracy": engine in FINE_TUNED,
                }
                results["engines"][engine] = run_worker(spec, scratch, child_timeout, on_event)
            progress.advance(overall)
        progress.update(phase, visible=False)
    results["versions"] = versions()
    results["ratios"] = compute_ratios(results["engines"])
    results["targets"] = targets(results)
    results["seconds"] = time.perf_counter() - started
    return results
