"""The Markdown reports, as pure functions of the results JSON, and writing a run's files.

``python -m benchmarks report FILE.json`` renders a committed results file again without
re-running anything: what is in the JSON is all the report reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.settings import ENGINES, FINE_TUNED, HTTP_INT8, LATENCY_BAND_WORDS
from benchmarks.stats import compute_ratios, targets

if TYPE_CHECKING:
    pass


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
        # Results of the earlier server also record its batching window settings.
        batching = ", ".join(
            f"{key} {server[key]}"
            for key in (
                "max_batch_documents",
                "max_wait_ms",
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


def write_results(
    results: Mapping[str, Any], out_dir: Path, markdown: str, kind: str | None = None
) -> tuple[Path, Path]:
    """Write ``<date>-<machine>[-<kind>].md`` (``markdown``) and ``.json``; return both paths.

    Every benchmark (main, ``load``, ``ray-scaling``) names and writes its pair this way.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{results['date']}-{results['machine']['name']}" + (f"-{kind}" if kind else "")
    markdown_path = out_dir / f"{stem}.md"
    raw = out_dir / f"{stem}.json"
    markdown_path.write_text(markdown, encoding="utf-8")
    raw.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return markdown_path, raw


# --------------------------------------------------------------------------- command line


# --------------------------------------------------------------------------- load mode


def _fmt_load(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def render_load_markdown(results: Mapping[str, Any]) -> str:
    """The load report: settings, independence cost, loopback run."""
    settings = results["settings"]
    machine = results["machine"]
    lines = [
        f"# khabar load benchmark — {results['date']} — {machine['name']}",
        "",
        f"{machine['cpu_model']}, {machine['cpus_usable']} usable CPUs; "
        f"{settings['threads']} intra-op threads, batch size {settings['batch_size']}; "
        f"{results['workload']['articles']} ANT test articles and "
        f"{results['workload']['sentences']} ANERcorp test sentences.",
        "",
        "## Answers independent of batch mates: what they cost",
        "",
        "In process, chunks of 64 documents. *One document per batch* is what khabar does; "
        "*mixed* is the earlier length-sorted batching across documents, whose answers "
        "depend on the other documents of the batch.",
        "",
        "| documents | one document per batch, docs/s | mixed batches, docs/s | cost | "
        "CPU ms/doc, one / mixed | CPU cost | answers that differ (entity lists) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for kind, figures in results.get("independence", {}).items():
        cpu = figures.get("cpu_ms_per_document", {})
        cpu_cost = figures.get("cpu_cost")
        lines.append(
            f"| {kind} ({figures['documents']}) "
            f"| {_fmt_load(figures['docs_per_s_one_document_per_batch'], 2)} "
            f"| {_fmt_load(figures['docs_per_s_mixed_batches'], 2)} "
            f"| {100 * figures['cost']:.1f}% "
            f"| {_fmt_load(cpu.get('one_document_per_batch'))} / "
            f"{_fmt_load(cpu.get('mixed_batches'))} "
            f"| {'—' if cpu_cost is None else f'{100 * cpu_cost:.1f}%'} "
            f"| {figures['answers_that_differ']} ({figures['entity_lists_that_differ']}) |"
        )
    loop = results.get("loopback", {})
    lines += ["", "## Loopback run of `khabar serve`", ""]
    if loop.get("status") != "ok":
        lines.append(f"Failed: {loop.get('note', 'unknown error')}")
    else:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(loop["statuses"].items()))
        capped = " (stopped by the time cap)" if loop.get("capped") else ""
        lines += [
            f"{loop['sent']} requests{capped} at concurrency {loop['concurrency']}, one "
            "document each (three sentences to one article).",
            "",
            "| figure | value |",
            "|---|--:|",
            f"| statuses | {statuses} |",
            f"| 5xx | {loop['server_errors']} |",
            f"| connection errors | {loop['connection_errors']} |",
            f"| documents/s | {_fmt_load(loop['docs_per_s'], 2)} |",
            f"| latency p50 / p95 / p99 ms | {_fmt_load(loop['p50_ms'], 0)} / "
            f"{_fmt_load(loop['p95_ms'], 0)} / {_fmt_load(loop['p99_ms'], 0)} |",
            "| server RSS after warm-up / at the end / peak MB | "
            f"{_fmt_load(loop['rss_start_mb'])} / "
            f"{_fmt_load(loop['rss_end_mb'])} / {_fmt_load(loop['peak_rss_mb'])} |",
        ]
        samples = [mb for _, mb in loop.get("rss_samples_mb", []) if mb is not None]
        if samples:
            quarters = [samples[min(len(samples) - 1, len(samples) * q // 4)] for q in range(4)]
            lines += [
                "",
                "Server RSS through the run (MB, at 0/4, 1/4, 2/4, 3/4 of it, then the end): "
                + ", ".join(_fmt_load(mb) for mb in quarters)
                + f", {_fmt_load(loop['rss_end_mb'])}.",
            ]
    lines += ["", f"Run took {results['seconds'] / 60:.1f} minutes."]
    return "\n".join(lines) + "\n"
