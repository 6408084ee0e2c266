"""Accuracy, speed and memory of every khabar engine, side by side, in one run.

Engines, each measured on the same documents and the same machine:

* ``torch-fp32``: the fine-tuned checkpoint of a training run in PyTorch, through the
  serving :class:`~serving.predictor.Predictor` (same windows, same decoding).
* ``bert-base-fp32``: a BERT-base sized encoder (the size of the CAMeL Tools and AraBERT
  models) with random weights, our vocabulary and our heads: only its speed means anything.
* ``onnx-fp32`` and ``onnx-int8``: the exported model directory (int8 is what ships).
* ``http-int8``: ``khabar serve`` in its own process, driven over loopback with one
  article per request at several concurrency levels.

``--load`` runs the reliability mode instead (:mod:`benchmarks.load`): the throughput
cost of answers independent of batch mates, and a long loopback run of ``khabar serve``
(10,000 requests at concurrency 32 by default) with every status, latency percentiles
and the server's RSS.

Each in-process engine runs in a subprocess of its own (this module with ``--worker``),
so its peak RSS is its own and a crash or a hang costs one engine, not the run. Workers
report progress and results as JSON lines on stdout.

The workload is the held-out test split of the model's own recipe: a seeded,
length-stratified sample of ANT test articles, and ANERcorp test sentences.

>>> main(["--quick"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from serving.predictor import Predictor
    from training.config import KhabarConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "models" / "default"
DEFAULT_RUN = REPO_ROOT / "runs" / "default"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"
# Git ignores benchmarks/scratch/: the held-out split cached between runs lives there.
DEFAULT_CACHE = REPO_ROOT / "benchmarks" / "scratch"
DEFAULT_TRIED = REPO_ROOT / "benchmarks" / "speedups.md"
CACHE_VERSION = 1

TORCH_FP32 = "torch-fp32"
BERT_BASE = "bert-base-fp32"
ONNX_FP32 = "onnx-fp32"
ONNX_INT8 = "onnx-int8"
HTTP_INT8 = "http-int8"
ENGINES = (TORCH_FP32, BERT_BASE, ONNX_FP32, ONNX_INT8, HTTP_INT8)
# Engines whose accuracy is reported: the fine-tuned weights in three runtimes.
FINE_TUNED = (TORCH_FP32, ONNX_FP32, ONNX_INT8)
ONNX_VARIANTS = {ONNX_FP32: "fp32", ONNX_INT8: "int8"}

# BERT-base: the encoder size of CAMeLBERT and AraBERT, the published ANERcorp baselines.
BERT_BASE_SHAPE = {
    "num_hidden_layers": 12,
    "hidden_size": 768,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
}

# training.data.topics.load_fignews gives its posts this source; they are not ANT articles.
FIGNEWS_SOURCE = "fignews"
# The article length the latency target speaks of ("one ~400-word article").
LATENCY_BAND_WORDS = (350, 450)
WARMUP_DOCUMENTS = 2
READY_TIMEOUT_S = 180.0

FULL = {
    "articles": 300,
    "sentences": None,  # all of them
    "single_calls": 100,
    "http_requests": 300,
    "time_cap": 90.0,
    # Documents per predictor call in the batch phase: what `khabar predict` reads at once.
    "chunk_size": 64,
}
QUICK = {
    "articles": 40,
    "sentences": 100,
    "single_calls": 10,
    "http_requests": 48,
    "time_cap": 6.0,
    # The time cap is checked between calls: smaller calls keep BERT-base within it.
    "chunk_size": 16,
}

# --load: the cap on the loopback run (checked between requests) only guards against a hang.
LOAD_TIME_CAP = 4 * 3600.0

TARGET_INT8_VS_TORCH = 2.0
TARGET_INT8_VS_BERT = 6.0
TARGET_F1_DROP = 1.0
TARGET_P50_MS = 100.0
TARGET_HTTP_SHARE = 0.85
TARGET_RSS_MB = 600.0

Event = Callable[..., None]


class SkipEngine(Exception):
    """The engine cannot be measured here; the reason goes into the results as a note."""


# --------------------------------------------------------------------------- pure helpers


def percentiles(
    values: Sequence[float], qs: Sequence[int] = (50, 95, 99)
) -> dict[str, float | None]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` with linear interpolation.

    Empty input gives ``None`` for each, so a phase that measured nothing renders as a
    dash instead of failing the run.

    >>> percentiles([1.0, 2.0, 3.0, 4.0], qs=(50,))
    {'p50': 2.5}
    """
    if not values:
        return {f"p{q}": None for q in qs}
    array = np.asarray(values, dtype=float)
    return {f"p{q}": float(np.percentile(array, q)) for q in qs}


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """Min, p50, p90, max and mean: how long the documents of a workload are."""
    if not values:
        return {"min": None, "p50": None, "p90": None, "max": None, "mean": None}
    array = np.asarray(values, dtype=float)
    return {
        "min": float(array.min()),
        "p50": float(np.percentile(array, 50)),
        "p90": float(np.percentile(array, 90)),
        "max": float(array.max()),
        "mean": float(array.mean()),
    }


def padding_ratio(batches: Sequence[Sequence[int]]) -> float:
    """Share of padding in the encoder inputs of ``batches``.

    Each batch is the content lengths of its windows; ``Predictor.collate`` pads every
    row to the longest window plus CLS and SEP. Padding is compute the encoder spends on
    nothing, so this says how much of the measured speed the batching gives away.

    Args:
        batches: Window content lengths, one list per batch.

    Returns:
        Padded positions / all positions (0.0 when there is nothing).

    >>> padding_ratio([[3, 1]])  # widths 5; real 5 + 3 = 8 of 10
    0.2
    """
    total = real = 0
    for lengths in batches:
        if not lengths:
            continue
        width = max(lengths) + 2
        total += width * len(lengths)
        real += sum(length + 2 for length in lengths)
    return (total - real) / total if total else 0.0


def word_count(text: str) -> int:
    """Whitespace words: the unit of "a ~400-word article"."""
    return len(text.split())


def chunked(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def stratified_sample(
    items: Sequence[Any], n: int, seed: int, length: Callable[[Any], Any]
) -> list[Any]:
    """A seeded sample of ``n`` items that keeps the length mix of ``items``.

    Systematic sampling over the items sorted by length, from a seeded random offset:
    every length quantile is represented in proportion, which a plain random sample
    of 40 articles does not promise. The sample comes back in seeded random order, so
    that a run capped by time still sees a mix of lengths.

    Args:
        items: The population.
        n: Sample size (all items when ``n`` is at least their number).
        seed: Seed of the offset and the order.
        length: Length of one item.
    """
    rng = random.Random(seed)
    if n >= len(items):
        chosen = list(items)
    else:
        ordered = sorted(items, key=length)
        step = len(ordered) / n
        offset = rng.random() * step
        chosen = [ordered[min(len(ordered) - 1, int(offset + i * step))] for i in range(n)]
    rng.shuffle(chosen)
    return chosen


def saved_epoch(history: Sequence[Mapping[str, Any]]) -> int | None:
    """The epoch whose weights a training run's checkpoint holds (the last one saved)."""
    saved = [record.get("epoch") for record in history if record.get("saved")]
    return saved[-1] if saved else None


def in_band(words: int, band: tuple[int, int] = LATENCY_BAND_WORDS) -> bool:
    """Whether an article counts as "~400 words" for the latency target."""
    return band[0] <= words <= band[1]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing or zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def slug(text: str) -> str:
    """A file-name-safe machine name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return cleaned or "machine"


# --------------------------------------------------------------------------- figures


def docs_per_s(engine: Mapping[str, Any] | None) -> float | None:
    """Batch documents per second of an engine; the HTTP engine's at concurrency 8."""
    if not engine or engine.get("status") != "ok":
        return None
    if "batch" in engine:
        return engine["batch"].get("docs_per_s")
    level = engine.get("levels", {}).get("8")
    return level.get("docs_per_s") if level else None


def compute_ratios(engines: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Docs/s of every engine against ``torch-fp32`` and against ``bert-base-fp32``."""
    torch_rate = docs_per_s(engines.get(TORCH_FP32))
    bert_rate = docs_per_s(engines.get(BERT_BASE))
    return {
        name: {
            "vs_torch_fp32": ratio(docs_per_s(engine), torch_rate),
            "vs_bert_base": ratio(docs_per_s(engine), bert_rate),
        }
        for name, engine in engines.items()
    }


def _accuracy(engine: Mapping[str, Any] | None, key: str) -> float | None:
    if not engine or engine.get("status") != "ok":
        return None
    return (engine.get("accuracy") or {}).get(key)


def _target(
    name: str, value: float | None, threshold: float, higher_is_better: bool, unit: str, note: str
) -> dict[str, Any]:
    """One target: PASS/MISS and by how much (positive margin = headroom)."""
    if value is None:
        return {
            "name": name,
            "value": None,
            "threshold": threshold,
            "unit": unit,
            "status": "N/A",
            "margin": None,
            "relative": None,
            "note": note,
        }
    margin = value - threshold if higher_is_better else threshold - value
    return {
        "name": name,
        "value": value,
        "threshold": threshold,
        "unit": unit,
        "status": "PASS" if margin >= 0 else "MISS",
        "margin": margin,
        "relative": margin / threshold if threshold else None,
        "note": note,
    }


def targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's speed, accuracy and memory targets, each PASS, MISS or N/A.

    A target whose engines were skipped or failed is N/A with the reason, never a
    silent PASS.
    """
    engines: Mapping[str, Mapping[str, Any]] = results.get("engines", {})
    int8 = engines.get(ONNX_INT8)
    int8_rate = docs_per_s(int8)
    out = [
        _target(
            "int8 docs/s ≥ 2× torch-fp32",
            ratio(int8_rate, docs_per_s(engines.get(TORCH_FP32))),
            TARGET_INT8_VS_TORCH,
            True,
            "×",
            "batch docs/s ratio",
        ),
        _target(
            "int8 docs/s ≥ 6× bert-base-fp32",
            ratio(int8_rate, docs_per_s(engines.get(BERT_BASE))),
            TARGET_INT8_VS_BERT,
            True,
            "×",
            "batch docs/s ratio",
        ),
    ]
    int8_f1 = _accuracy(int8, "entity_micro_f1")
    for reference in (ONNX_FP32, TORCH_FP32):
        reference_f1 = _accuracy(engines.get(reference), "entity_micro_f1")
        drop = None if int8_f1 is None or reference_f1 is None else reference_f1 - int8_f1
        how = "drop = reference F1 − int8 F1 (ANERcorp test)"
        caveat = (engines.get(reference) or {}).get("note")
        out.append(
            _target(
                f"int8 entity F1 within 1.0 pt of {reference}",
                drop,
                TARGET_F1_DROP,
                False,
                "pt",
                f"{how}; {caveat}" if caveat and drop is not None else how,
            )
        )
    latency, note = None, "no onnx-int8 figures"
    if int8 and int8.get("status") == "ok":
        band = int8.get("single_band") or {}
        if band.get("calls"):
            latency = band.get("p50_ms")
            lo, hi = LATENCY_BAND_WORDS
            note = f"p50 of {band['calls']} single calls on {lo}–{hi}-word articles"
        else:
            latency = (int8.get("single") or {}).get("p50_ms")
            note = "no 350–450-word article in the sample: p50 of all single calls"
    out.append(_target("~400-word article p50 ≤ 100 ms", latency, TARGET_P50_MS, False, "ms", note))
    http = engines.get(HTTP_INT8)
    out.append(
        _target(
            "HTTP c=8 ≥ 85% of in-process int8 docs/s",
            ratio(docs_per_s(http), int8_rate),
            TARGET_HTTP_SHARE,
            True,
            "share",
            "HTTP docs/s at concurrency 8 / onnx-int8 batch docs/s",
        )
    )
    rss, note = None, "no serving figures"
    if http and http.get("status") == "ok" and http.get("peak_rss_mb") is not None:
        rss, note = http["peak_rss_mb"], "VmHWM of the `khabar serve` process"
    elif int8 and int8.get("status") == "ok":
        rss = int8.get("peak_rss_mb")
        note = "http-int8 not measured: peak RSS of the in-process onnx-int8 worker"
    out.append(_target("serving peak RSS ≤ 600 MB", rss, TARGET_RSS_MB, False, "MB", note))
    return out


# --------------------------------------------------------------------------- markdown


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table cell; a dash for a missing one."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "×":
        return f"{value:.2f}×"
    if unit == "share":
        return f"{100 * value:.1f} %"
    if unit == "pt":
        return f"{value:+.2f} pt"
    if unit == "ms":
        return f"{value:.1f} ms"
    return f"{value:.0f} {unit}"


def _fmt_margin(target: Mapping[str, Any]) -> str:
    margin = target.get("margin")
    if margin is None:
        return "—"
    unit = target["unit"]
    word = "headroom" if margin >= 0 else "short"
    if unit == "share":
        amount = f"{100 * abs(margin):.1f} pts"
    elif unit == "×":
        amount = f"{abs(margin):.2f}×"
    elif unit == "pt":
        amount = f"{abs(margin):.2f} pt"
    elif unit == "ms":
        amount = f"{abs(margin):.1f} ms"
    else:
        amount = f"{abs(margin):.0f} {unit}"
    relative = target.get("relative")
    extra = f" ({100 * abs(relative):.0f} %)" if relative is not None and unit != "pt" else ""
    return f"{amount}{extra} {word}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A Markdown table; ``align`` has ``l`` or ``r`` per column (default: first left)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("--:" if a == "r" else "---" for a in align) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _dist(stats: Mapping[str, Any] | None) -> str:
    if not stats or stats.get("min") is None:
        return "—"
    return " / ".join(fmt(stats[key], 0) for key in ("min", "p50", "p90", "max"))


def render_markdown(results: Mapping[str, Any]) -> str:
    """The whole report as Markdown: setup, workload, engines, HTTP and targets.

    Reads only ``results`` (the JSON written beside it), so a report can be rendered
    again from an old ``.json`` file.
    """
    settings = results.get("settings", {})
    machine = results.get("machine", {})
    engines: Mapping[str, Mapping[str, Any]] = results.get("engines", {})
    ratios = results.get("ratios") or compute_ratios(engines)
    lines = [
        f"# khabar benchmark — {results.get('date', '?')} — {machine.get('name', '?')}",
        "",
        f"- CPU: {machine.get('cpu_model', '?')}; {machine.get('cpus_usable', '?')} usable "
        f"of {machine.get('cpus', '?')} logical CPUs; {fmt(machine.get('memory_gb'))} GB RAM; "
        f"{machine.get('platform', '?')}",
        f"- Threads: {settings.get('threads', '?')} (onnxruntime intra-op / torch); "
        f"batch size {settings.get('batch_size', '?')} windows; "
        f"mode {'quick' if settings.get('quick') else 'full'}; "
        f"time cap {fmt(settings.get('time_cap'), 0)} s per phase",
        f"- Model: `{settings.get('model_dir', '?')}`; run: `{settings.get('run_dir', '?')}`",
        "- Versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted((results.get("versions") or {}).items())),
        "",
    ]

    workload = results.get("workload", {})
    articles = workload.get("articles", {})
    sentences = workload.get("sentences", {})
    lines += ["## Workload", ""]
    lines += _table(
        ["set", "docs", "words min / p50 / p90 / max", "tokens min / p50 / p90 / max", "windows"],
        [
            [
                f"ANT test articles (seeded sample, seed {settings.get('seed', '?')})",
                str(articles.get("documents", 0)),
                _dist(articles.get("words")),
                _dist(articles.get("tokens")),
                str(articles.get("windows", 0)),
            ],
            [
                "ANERcorp test sentences",
                str(sentences.get("documents", 0)),
                _dist(sentences.get("words")),
                _dist(sentences.get("tokens")),
                str(sentences.get("windows", 0)),
            ],
        ],
    )
    lines += [
        "",
        f"Padding ratio of the article batches (padded / all encoder input positions, "
        f"batch size {settings.get('batch_size', '?')}, "
        f"{settings.get('chunk_size', '?')} documents per call): "
        f"{fmt(100 * articles['padding_ratio'] if 'padding_ratio' in articles else None)} %. "
        f"Articles of {LATENCY_BAND_WORDS[0]}–{LATENCY_BAND_WORDS[1]} words: "
        f"{articles.get('in_band', 0)}.",
        "",
        "## Engines",
        "",
    ]

    rows, notes = [], []
    for name in ENGINES:
        engine = engines.get(name)
        if engine is None:
            continue
        status = engine.get("status")
        if status != "ok":
            notes.append(f"- **{name}** {status}: {engine.get('note', '')}")
            rows.append([name] + [status or "—"] + ["—"] * 13)
            continue
        if name == HTTP_INT8:
            level = engine.get("levels", {}).get("8") or {}
            rate, tokens_rate = level.get("docs_per_s"), None
            single = {k: level.get(k) for k in ("p50_ms", "p95_ms", "p99_ms")}
            band = {}
        else:
            batch = engine.get("batch", {})
            rate, tokens_rate = batch.get("docs_per_s"), batch.get("tokens_per_s")
            single = engine.get("single", {})
            band = engine.get("single_band") or {}
        accuracy = engine.get("accuracy") or {}
        shown = name in FINE_TUNED
        rows.append(
            [
                name + (" (c=8)" if name == HTTP_INT8 else ""),
                fmt(rate, 2),
                fmt(tokens_rate, 0),
                _fmt_value(ratios.get(name, {}).get("vs_torch_fp32"), "×"),
                _fmt_value(ratios.get(name, {}).get("vs_bert_base"), "×"),
                fmt(single.get("p50_ms")),
                fmt(single.get("p95_ms")),
                fmt(single.get("p99_ms")),
                fmt(band.get("p50_ms")),
                fmt(engine.get("peak_rss_mb"), 0),
                fmt(engine.get("model_mb")),
                fmt(accuracy.get("entity_micro_f1"), 2) if shown else "n/a",
                fmt(accuracy.get("topic_micro_f1"), 2) if shown else "n/a",
                fmt(accuracy.get("section_accuracy"), 2) if shown else "n/a",
                fmt(engine.get("load_s"), 1),
            ]
        )
        if engine.get("note"):
            notes.append(f"- **{name}**: {engine['note']}")
        capped = [
            phase
            for phase in ("batch", "single", "single_band")
            if (engine.get(phase) or {}).get("capped")
        ]
        if capped:
            notes.append(
                f"- **{name}**: stopped by the time cap in {', '.join(capped)} "
                f"(batch: {engine.get('batch', {}).get('documents', 0)} documents measured)"
            )
    lines += _table(
        [
            "engine",
            "docs/s",
            "tokens/s",
            "× torch-fp32",
            "× bert-base",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "~400w p50 ms",
            "peak RSS MB",
            "model MB",
            "entity F1",
            "topic micro-F1",
            "section acc.",
            "load s",
        ],
        rows,
    )
    lines += [
        "",
        "docs/s and tokens/s: batch analysis of the articles; latency: one article per call "
        f"({settings.get('single_calls', '?')} calls; ~400w: articles of "
        f"{LATENCY_BAND_WORDS[0]}–{LATENCY_BAND_WORDS[1]} words). Peak RSS: the worker after "
        "the speed phases, before accuracy (VmHWM, MB of 10⁶ bytes); for HTTP, the server's "
        "VmHWM. Entity F1: ANERcorp test (seqeval, strict IOB2); topic micro-F1 and section "
        "accuracy: the ANT sample. bert-base-fp32 has random weights: speed only.",
    ]
    if notes:
        lines += ["", *notes]

    http = engines.get(HTTP_INT8)
    if http and http.get("status") == "ok":
        lines += ["", "## HTTP: one article per request", ""]
        http_rows = []
        for level, figures in sorted(http.get("levels", {}).items(), key=lambda kv: int(kv[0])):
            http_rows.append(
                [
                    level,
                    f"{figures.get('ok', 0)} / {figures.get('sent', 0)}",
                    str(figures.get("errors", 0)),
                    fmt(figures.get("docs_per_s"), 2),
                    fmt(figures.get("p50_ms")),
                    fmt(figures.get("p95_ms")),
                    fmt(figures.get("p99_ms")),
                    "yes" if figures.get("capped") else "no",
                ]
            )
        lines += _table(
            [
                "concurrency",
                "ok / sent",
                "errors",
                "docs/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "capped",
            ],
            http_rows,
        )
        server = http.get("server_settings") or {}
        batching = ", ".join(
            f"{key} {server[key]}"
            for key in (
                "max_queued_requests",
                "max_tokens_per_document",
                "max_tokens_per_request",
                "request_timeout_s",
            )
            if key in server
        )
        lines += [
            "",
            f"Server peak RSS (VmHWM): {fmt(http.get('peak_rss_mb'), 0)} MB; "
            f"`khabar serve --threads {settings.get('threads', '?')} "
            f"--batch-size {settings.get('batch_size', '?')}`"
            + (f" ({batching})" if batching else "")
            + "; the load generator shares the machine's CPUs with the server.",
        ]

    lines += ["", "## Targets", ""]
    target_rows = [
        [
            target["name"],
            _fmt_value(target["value"], target["unit"]),
            target["status"],
            _fmt_margin(target),
            target.get("note", ""),
        ]
        for target in results.get("targets") or targets(results)
    ]
    lines += _table(["target", "measured", "status", "by", "how"], target_rows, align="lrlll")
    if results.get("tried"):
        lines += ["", "## What was tried for speed", "", str(results["tried"]).strip()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- machine


def machine_info(name: str | None = None) -> dict[str, Any]:
    """CPU model, CPU counts, memory and platform: what the figures depend on."""
    cpu_model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = int(line.split()[1]) * 1024 / 1e9
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "name": slug(name or platform.node() or "machine"),
        "hostname": platform.node(),
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    """Library versions of the card (``library_versions``) plus the HTTP stack's."""
    import importlib.metadata as md

    try:
        from training.trainer import library_versions

        found = library_versions()
    except ImportError:  # no torch here: only the packages that are installed
        found = {"python": platform.python_version()}
    for package in ("fastapi", "uvicorn", "httpx", "tokenizers", "onnxruntime", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            found.setdefault(package, md.version(package))
    return found


def ru_maxrss_mb() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` of this process, in MB.

    Linux carries ``ru_maxrss`` over ``execve`` from the process that forked, so in a
    worker it is at least the parent's RSS at the fork; :func:`peak_rss_mb` is the
    figure to report, this one is kept beside it in the JSON.
    """
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes
    return kib * scale / 1e6


def vmhwm_mb(pid: int | str) -> float | None:
    """Peak RSS (``VmHWM``) of a live process, from ``/proc/<pid>/status``, in MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB", text, flags=re.MULTILINE)
    return int(match.group(1)) * 1024 / 1e6 if match else None


def peak_rss_mb() -> float:
    """This process's own peak RSS in MB: ``VmHWM``, else ``ru_maxrss`` off Linux.

    ``VmHWM`` belongs to the address space that ``execve`` created, so unlike
    ``ru_maxrss`` it does not include the benchmark process that started the worker.
    """
    own = vmhwm_mb("self")
    return own if own is not None else ru_maxrss_mb()


# --------------------------------------------------------------------------- workload


def config_of(
    model_dir: Path, config_path: Path | None, data_root: Path | None = None
) -> KhabarConfig:
    """The recipe whose held-out split is the workload: ``--config`` or the model's own.

    Raises:
        ConfigError: No ``--config`` and the model records no training config.
    """
    from serving.metadata import ModelMetadata
    from training.config import config_of_model

    training = ModelMetadata.load(model_dir).training
    return config_of_model(training, str(model_dir), config_path, data_root=data_root)


def _data_files(config: KhabarConfig) -> list[Path]:
    """The recipe's corpus files under its data root (those found) and its story rules."""
    from training.data.corpora import data_names, expand

    files = [path for name in data_names(config) for path in expand(config, name).values()]
    if config.topics is not None and config.topics.story_rules is not None:
        files.append(config.recipe_path(config.topics.story_rules))
    return files


def cache_key(config: KhabarConfig) -> str:
    """A key that changes with the recipe or with any of its data files."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    digest.update(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode())
    for path in _data_files(config):
        try:
            stat = Path(path).stat()
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        except OSError:
            digest.update(f"{path}:missing".encode())
    return digest.hexdigest()[:16]


def held_out(config: KhabarConfig, cache_dir: Path | None) -> dict[str, Any]:
    """ANT test articles and ANERcorp test sentences of the recipe, as plain data.

    Loading and splitting every corpus takes tens of seconds, more than a quick run
    can spend, so the held-out split is cached under ``cache_dir`` keyed by the recipe
    and its data files' sizes and times.
    """
    path = cache_dir / f"held-out-{cache_key(config)}.json" if cache_dir else None
    if path is not None and path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        data["from_cache"] = True
        return data
    from training.data.corpora import load_corpora

    corpora = load_corpora(config, with_test=True)
    data = {
        "articles": [
            {"id": e.id, "text": e.text, "source": e.source, "labels": e.labels}
            for e in corpora.topic_test
            if e.source != FIGNEWS_SOURCE
        ],
        "sentences": [
            {"tokens": list(s.tokens), "tags": list(s.tags)} for s in corpora.entity_test
        ],
        "sections": config.topics.sections if config.topics is not None else [],
    }
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        scratch.replace(path)
    data["from_cache"] = False
    return data


def sample_workload(
    data: Mapping[str, Any], n_articles: int, n_sentences: int | None, seed: int
) -> dict[str, Any]:
    """The run's documents: stratified articles and (a seeded sample of) sentences."""
    articles = stratified_sample(
        data["articles"], n_articles, seed, length=lambda a: (word_count(a["text"]), a["id"])
    )
    sentences = list(data["sentences"])
    if n_sentences is not None and n_sentences < len(sentences):
        keep = sorted(random.Random(seed).sample(range(len(sentences)), n_sentences))
        sentences = [sentences[i] for i in keep]
    return {"articles": articles, "sentences": sentences, "sections": list(data["sections"])}


def text_predictor(model_dir: Path) -> Predictor:
    """A predictor for the text-side steps only (prepare, batches): no encoder is loaded."""
    from serving.metadata import TOKENIZER_NAME, ModelMetadata
    from serving.predictor import Predictor
    from serving.tokenise import load_tokenizer

    metadata = ModelMetadata.load(model_dir)
    tokenizer = load_tokenizer(model_dir / TOKENIZER_NAME)
    # prepare() and batches() never touch the session.
    return Predictor(metadata, tokenizer, session=None, model_dir=model_dir)  # type: ignore[arg-type]


def workload_stats(
    predictor: Predictor, workload: Mapping[str, Any], batch_size: int, chunk_size: int
) -> dict[str, Any]:
    """Length distributions, window counts and padding ratio of the workload.

    The padding ratio uses the batches the batch phase will run: the same chunks of
    documents, grouped by ``Predictor.batches`` and padded as ``collate`` pads.
    """
    texts = [a["text"] for a in workload["articles"]]
    lengths: list[list[int]] = []
    tokens: list[int] = []
    windows = 0
    for chunk in chunked(texts, chunk_size):
        prepared = predictor.prepare(chunk)
        tokens += [p.encoded.n_tokens for p in prepared]
        windows += sum(len(p.windows) for p in prepared)
        lengths += [[w.length for w in batch] for batch in predictor.batches(prepared, batch_size)]
    words = [word_count(t) for t in texts]
    sentence_texts = [" ".join(s["tokens"]) for s in workload["sentences"]]
    prepared_sentences = predictor.prepare(sentence_texts) if sentence_texts else []
    return {
        "articles": {
            "documents": len(texts),
            "words": distribution(words),
            "tokens": distribution(tokens),
            "total_tokens": int(sum(tokens)),
            "windows": windows,
            "padding_ratio": padding_ratio(lengths),
            "batches": len(lengths),
            "in_band": sum(in_band(w) for w in words),
        },
        "sentences": {
            "documents": len(sentence_texts),
            "words": distribution([len(s["tokens"]) for s in workload["sentences"]]),
            "tokens": distribution([p.encoded.n_tokens for p in prepared_sentences]),
            "windows": sum(len(p.windows) for p in prepared_sentences),
        },
    }


# --------------------------------------------------------------------------- worker side


def build_engine(spec: Mapping[str, Any]) -> tuple[Predictor, dict[str, Any]]:
    """Load one in-process engine as a :class:`Predictor`.

    Raises:
        SkipEngine: The engine cannot be built from what is on disk.
    """
    from serving.metadata import TOKENIZER_NAME, ModelMetadata
    from serving.predictor import Predictor, load_lexical_head
    from serving.tokenise import load_tokenizer

    engine = spec["engine"]
    model_dir = Path(spec["model_dir"])
    threads = spec["threads"]
    if engine in ONNX_VARIANTS:
        predictor = Predictor.load(model_dir, threads=threads, variant=ONNX_VARIANTS[engine])
        path = predictor.session.path
        return predictor, {
            "model_file": path.name,
            "model_mb": path.stat().st_size / 1e6,
            "threads": predictor.session.threads,
        }

    import torch

    from training.model import WEIGHTS_NAME, KhabarModel, encoder_from_config
    from training.torch_session import TorchSession
    from training.trainer import CHECKPOINT_DIR, RUN_NAME, TOKENIZER_FILE

    metadata = ModelMetadata.load(model_dir)
    tokenizer = load_tokenizer(model_dir / TOKENIZER_NAME)
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    info: dict[str, Any] = {}
    if engine == TORCH_FP32:
        run_dir = Path(spec["run_dir"])
        checkpoint = run_dir / CHECKPOINT_DIR
        if not (checkpoint / WEIGHTS_NAME).is_file():
            raise SkipEngine(f"{checkpoint} has no {WEIGHTS_NAME} (training not finished?)")
        model = KhabarModel.load(checkpoint)
        rows = int(model.encoder.get_input_embeddings().weight.shape[0])
        if rows != vocab_size:
            raise SkipEngine(
                f"the checkpoint has {rows} embedding rows but the model's tokenizer has "
                f"{vocab_size} ids: the ids would not match"
            )
        run_tokenizer = run_dir / TOKENIZER_FILE
        if run_tokenizer.is_file() and load_tokenizer(run_tokenizer).get_vocab(
            with_added_tokens=True
        ) != tokenizer.get_vocab(with_added_tokens=True):
            raise SkipEngine(
                f"{run_tokenizer} and the model's tokenizer map pieces to different ids"
            )
        run_file = run_dir / RUN_NAME
        if run_file.is_file():
            run_history = json.loads(run_file.read_text(encoding="utf-8")).get("history", [])
            in_run = saved_epoch(run_history)
            exported = saved_epoch(metadata.training.get("history", []))
            if in_run != exported:
                info["note"] = (
                    f"the run's checkpoint is from epoch {in_run}, the export's from epoch "
                    f"{exported}: torch-fp32 and the ONNX engines hold different weights"
                )
        info["model_file"] = f"{CHECKPOINT_DIR}/{WEIGHTS_NAME}"
        info["model_mb"] = (checkpoint / WEIGHTS_NAME).stat().st_size / 1e6
    else:
        from transformers import BertConfig

        torch.manual_seed(spec["seed"])
        config = BertConfig(
            vocab_size=vocab_size,
            max_position_embeddings=max(512, metadata.max_length),
            pad_token_id=metadata.special_tokens.pad_id,
            **BERT_BASE_SHAPE,
        )
        model = KhabarModel(
            encoder_from_config(config), len(metadata.entity_tags), len(metadata.topic_labels)
        )
        model.eval()
        info["model_file"] = "random BERT-base (parameters)"
        info["model_mb"] = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
        info["parameters"] = sum(p.numel() for p in model.parameters())
    session = TorchSession(model, threads=threads)
    info["threads"] = session.threads
    # The same pipeline as the ONNX engines, lexical topic head included.
    lexical = load_lexical_head(model_dir, metadata)
    return Predictor(metadata, tokenizer, session, model_dir, lexical), info  # type: ignore[arg-type]


def time_batches(
    predictor: Predictor,
    texts: Sequence[str],
    batch_size: int,
    chunk_size: int,
    time_cap: float,
    emit: Event,
) -> dict[str, Any]:
    """Batch analysis: chunks of documents per call until all are done or time runs out."""
    chunks = list(chunked(list(texts), chunk_size))
    documents = tokens = 0
    started = time.perf_counter()
    capped = False
    for index, chunk in enumerate(chunks):
        if index and time.perf_counter() - started > time_cap:
            capped = True
            break
        results = predictor.analyze(chunk, batch_size=batch_size)
        documents += len(results)
        tokens += sum(r.n_tokens for r in results)
        emit(event="progress", phase="batch", done=documents, total=len(texts))
    seconds = time.perf_counter() - started
    return {
        "documents": documents,
        "tokens": tokens,
        "seconds": seconds,
        "docs_per_s": documents / seconds if seconds else None,
        "tokens_per_s": tokens / seconds if seconds else None,
        "capped": capped,
    }


def time_singles(
    predictor: Predictor,
    texts: Sequence[str],
    calls: int,
    batch_size: int,
    time_cap: float,
    emit: Event,
    phase: str,
) -> dict[str, Any]:
    """Latency of one document per call, cycling through ``texts``."""
    latencies: list[float] = []
    words: list[int] = []
    started = time.perf_counter()
    capped = False
    for call in range(calls if texts else 0):
        if call and time.perf_counter() - started > time_cap:
            capped = True
            break
        text = texts[call % len(texts)]
        begin = time.perf_counter()
        predictor.analyze([text], batch_size=batch_size)
        latencies.append(1000 * (time.perf_counter() - begin))
        words.append(word_count(text))
        emit(event="progress", phase=phase, done=call + 1, total=calls)
    figures = {f"{k}_ms": v for k, v in percentiles(latencies).items()}
    return {
        "calls": len(latencies),
        **figures,
        "mean_ms": float(np.mean(latencies)) if latencies else None,
        "capped": capped,
        "latencies_ms": [round(v, 3) for v in latencies],
        "words": words,
    }


def measure_accuracy(
    predictor: Predictor, workload: Mapping[str, Any], batch_size: int, emit: Event
) -> dict[str, Any]:
    """Entity F1 on the sentences and topic figures on the articles, as evaluation does."""
    from training.data.conll import Sentence
    from training.data.topics import TopicExample
    from training.evaluate import entity_report, topic_probabilities, topic_report

    metadata = predictor.metadata
    accuracy: dict[str, Any] = {}
    sentences = [Sentence(tuple(s["tokens"]), tuple(s["tags"])) for s in workload["sentences"]]
    if metadata.entity_types and sentences:
        emit(event="progress", phase="entity accuracy", done=0, total=1)
        report = entity_report(predictor, sentences, batch_size=batch_size)
        accuracy["entity"] = report
        accuracy["entity_micro_f1"] = report["micro_f1"]
    examples = [
        TopicExample(id=a["id"], text=a["text"], source=a["source"], labels=a["labels"])
        for a in workload["articles"]
    ]
    if metadata.topic_labels and examples:
        emit(event="progress", phase="topic accuracy", done=0, total=1)
        probabilities = topic_probabilities(predictor, examples, batch_size=batch_size)
        report = topic_report(
            probabilities,
            examples,
            metadata.topic_labels,
            workload["sections"],
            metadata.thresholds,
        )
        accuracy["topic"] = report
        accuracy["topic_micro_f1"] = report["micro_f1"]
        accuracy["section_accuracy"] = report.get("section_accuracy")
    return accuracy


def measure_engine(spec: Mapping[str, Any], emit: Event) -> dict[str, Any]:
    """Everything one in-process engine is measured on, in the worker process.

    Peak RSS is read after the speed phases and again after accuracy: evaluation loads
    seqeval and scikit-learn, which a serving process never does.
    """
    workload = json.loads(Path(spec["workload"]).read_text(encoding="utf-8"))
    texts = [a["text"] for a in workload["articles"]]
    batch_size, cap = spec["batch_size"], spec["time_cap"]
    emit(event="progress", phase="load", done=0, total=1)
    started = time.perf_counter()
    predictor, info = build_engine(spec)
    result: dict[str, Any] = {"status": "ok", **info}
    result["load_s"] = time.perf_counter() - started
    predictor.analyze(texts[:WARMUP_DOCUMENTS], batch_size=batch_size)
    result["batch"] = time_batches(predictor, texts, batch_size, spec["chunk_size"], cap, emit)
    calls = spec["single_calls"]
    result["single"] = time_singles(predictor, texts, calls, batch_size, cap, emit, "single")
    band = [t for t in texts if in_band(word_count(t))]
    result["single_band"] = (
        time_singles(predictor, band, calls, batch_size, cap, emit, "single ~400w")
        if band
        else None
    )
    result["peak_rss_mb"] = peak_rss_mb()
    result["ru_maxrss_mb"] = ru_maxrss_mb()
    if spec["accuracy"]:
        result["accuracy"] = measure_accuracy(predictor, workload, batch_size, emit)
    result["peak_rss_after_accuracy_mb"] = peak_rss_mb()
    return result


def worker_main(spec_path: Path) -> int:
    """Measure the engine described in ``spec_path``; JSON lines on stdout."""

    def emit(**event: Any) -> None:
        print(json.dumps(event, ensure_ascii=False), flush=True)

    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    try:
        result = measure_engine(spec, emit)
    except SkipEngine as exc:
        result = {"status": "skipped", "note": str(exc)}
    emit(event="result", result=result)
    return 0


# --------------------------------------------------------------------------- parent side


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def run_worker(
    spec: Mapping[str, Any], scratch: Path, timeout_s: float, on_event: Event
) -> dict[str, Any]:
    """Run one engine in a fresh interpreter and return its result.

    A worker that crashes or outlives ``timeout_s`` becomes an ``error`` result with
    the end of its stderr, and the run goes on with the next engine.
    """
    name = spec["engine"]
    spec_path = scratch / f"{name}.spec.json"
    log_path = scratch / f"{name}.stderr.log"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    outcome: dict[str, Any] = {}

    def read(stream: Any) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a library printing to stdout; not ours
            if not isinstance(event, dict):
                continue
            if event.get("event") == "result":
                outcome["result"] = event["result"]
            else:
                on_event(**event)

    command = [sys.executable, "-m", "benchmarks.run", "--worker", str(spec_path)]
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=_child_env(),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            encoding="utf-8",
        )
        reader = threading.Thread(target=read, args=(process.stdout,), daemon=True)
        reader.start()
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            reader.join(timeout=5)
            return {"status": "error", "note": f"worker timed out after {timeout_s:.0f} s"}
        reader.join(timeout=5)
    if code != 0 or "result" not in outcome:
        return {"status": "error", "note": f"worker exited {code}: {_tail(log_path)}"}
    return outcome["result"]


def free_port() -> int:
    """A TCP port that was free a moment ago on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(model_dir: Path, port: int, threads: int, batch_size: int) -> list[str]:
    """``khabar serve`` from this interpreter's environment."""
    script = Path(sys.executable).parent / "khabar"
    prefix = [str(script)] if script.is_file() else [sys.executable, "-m", "serving.cli.app"]
    return prefix + [
        "serve",
        "--model",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--batch-size",
        str(batch_size),
        "--log-level",
        "warning",
    ]


def stop_process(process: subprocess.Popen[Any], grace_s: float = 15.0) -> None:
    """SIGINT (uvicorn's graceful shutdown), then SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    for send, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0)):
        process.send_signal(send)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    process.wait()


def wait_ready(base_url: str, process: subprocess.Popen[Any], timeout_s: float) -> None:
    """Poll ``/v1/ready`` until 200.

    Raises:
        RuntimeError: The server exited or was not ready in time.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/v1/ready", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s")


async def drive(
    url: str,
    texts: Sequence[str],
    concurrency: int,
    requests: int,
    time_cap: float,
    on_done: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Closed-loop load over loopback that stops by itself.

    ``concurrency`` clients each send one article per request and wait for the answer
    before sending the next, until ``requests`` have been sent or ``time_cap`` seconds
    have passed (requests in flight then still finish, bounded by the client timeout).
    """
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    started = time.perf_counter()
    deadline = started + time_cap
    capped = False
    timeout = httpx.Timeout(max(60.0, 4 * time_cap))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal sent, capped
        while sent < requests:
            if time.perf_counter() > deadline:
                capped = True
                return
            index = sent
            sent += 1
            begin = time.perf_counter()
            try:
                response = await client.post(url, json={"text": texts[index % len(texts)]})
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            if status == "200":
                latencies.append(1000 * (time.perf_counter() - begin))
            else:
                errors[status] = errors.get(status, 0) + 1
            if on_done is not None:
                on_done(len(latencies) + sum(errors.values()))

    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "sent": sent,
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "seconds": seconds,
        "docs_per_s": len(latencies) / seconds if seconds else None,
        **{f"{k}_ms": v for k, v in percentiles(latencies).items()},
        "mean_ms": float(np.mean(latencies)) if latencies else None,
        "capped": capped,
    }


def measure_http(
    options: argparse.Namespace, texts: Sequence[str], scratch: Path, on_event: Event
) -> dict[str, Any]:
    """Start ``khabar serve``, load it at each concurrency level, read VmHWM, stop it."""
    from serving.api.settings import ServerSettings
    from serving.metadata import ModelMetadata

    metadata = ModelMetadata.load(options.model)
    model_file = options.model / metadata.onnx_files[metadata.default_variant]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = scratch / "http-server.log"
    command = serve_command(options.model, port, options.threads, options.batch_size)
    result: dict[str, Any] = {
        "status": "ok",
        "model_file": model_file.name,
        "model_mb": model_file.stat().st_size / 1e6,
        "threads": options.threads,
        "command": " ".join(command),
        # What the server reads: these options on top of KHABAR_* variables and defaults.
        "server_settings": ServerSettings(
            model_dir=options.model, threads=options.threads, batch_size=options.batch_size
        ).model_dump(mode="json"),
        "levels": {},
    }
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=_child_env(), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            on_event(event="progress", phase="start server", done=0, total=1)
            started = time.perf_counter()
            wait_ready(base_url, process, READY_TIMEOUT_S)
            result["load_s"] = time.perf_counter() - started
            url = f"{base_url}/v1/analyze"
            asyncio.run(drive(url, texts, 1, min(2, len(texts)), options.time_cap))  # warm-up
            for level in options.concurrency:

                def done(count: int, level: int = level) -> None:
                    on_event(
                        event="progress",
                        phase=f"http c={level}",
                        done=count,
                        total=options.http_requests,
                    )

                result["levels"][str(level)] = asyncio.run(
                    drive(url, texts, level, options.http_requests, options.time_cap, done)
                )
            result["peak_rss_mb"] = vmhwm_mb(process.pid)
        except Exception as exc:
            result = {"status": "error", "note": f"{exc} | server log: {_tail(log_path)}"}
        finally:
            stop_process(process)
    return result


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


def _progress(quiet: bool) -> Any:
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
    progress = _progress(options.quiet)
    with progress, tempfile.TemporaryDirectory(prefix="khabar-bench-") as tmp:
        scratch = Path(tmp)
        overall = progress.add_task("workload", total=len(options.engines) + 1)
        phase = progress.add_task("", total=1, visible=False)

        def on_event(**event: Any) -> None:
            if event.get("event") == "progress":
                progress.update(
                    phase,
                    description=f"  {event.get('phase', '')}",
                    completed=event.get("done", 0),
                    total=max(1, event.get("total", 1)),
                    visible=True,
                )

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


def write_results(results: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``<date>-<machine>.md`` and ``.json`` into ``out_dir``; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{results['date']}-{results['machine']['name']}"
    markdown = out_dir / f"{stem}.md"
    raw = out_dir / f"{stem}.json"
    markdown.write_text(render_markdown(results), encoding="utf-8")
    raw.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return markdown, raw


# --------------------------------------------------------------------------- command line


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
    from benchmarks import load
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
        from benchmarks import load

        try:
            load_results = load.run_load(options)
        except KhabarError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        markdown, raw = load.write_results(load_results, options.out)
        print(load.render_markdown(load_results))
        print(f"written: {markdown} and {raw}", file=sys.stderr)
        return 0 if load_results["loopback"].get("status") == "ok" else 1

    try:
        results = run_benchmark(options)
    except KhabarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if options.tried.is_file():
        results["tried"] = options.tried.read_text(encoding="utf-8")
    markdown, raw = write_results(results, options.out)
    print(render_markdown(results))
    print(f"written: {markdown} and {raw}", file=sys.stderr)
    failed = [n for n, e in results["engines"].items() if e.get("status") == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
