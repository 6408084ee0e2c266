"""Load mode of the benchmark: a long loopback run, and what batch-mate independence costs.

``python -m benchmarks.run --load`` measures, on the held-out workload of the main
benchmark:

* **Batch-mate independence, in process.** Documents per second with encoder batches
  that hold one document each (what khabar does) and with batches that mix documents,
  sorted by length (what it did before): the int8 graph scales activations over the
  whole batch, so mixing is faster for short texts but lets one document change
  another's answer. Both on the articles and on the sentences, best of a few
  alternating rounds, and how many documents' answers (at the API's rounding) differ
  between the two.
* **A long loopback run.** ``khabar serve`` in its own process, ``--load-requests``
  requests (default 10,000) from ``--load-concurrency`` clients (default 32), one
  document per request cycling through sentences and articles (three sentences to one
  article); every status counted (the target is no 5xx), latency p50/p95/p99, and the
  server's RSS after warm-up and at the end, with its peak.

Results go to ``<date>-<machine>-load.md`` and ``.json`` beside the main results.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.http_load import drive, free_port, serve_command, stop_process, wait_ready
from benchmarks.machine import child_env, log_tail, machine_info, versions, vmhwm_mb
from benchmarks.settings import READY_TIMEOUT_S, REPO_ROOT
from benchmarks.suite import phase_events, progress_bar
from benchmarks.workload import config_of, held_out, sample_workload

if TYPE_CHECKING:
    import argparse

    from serving.predictor import Predictor

LOAD_REQUESTS = 10_000
LOAD_CONCURRENCY = 32
QUICK_LOAD_REQUESTS = 500
# Rounds of the in-process comparison; the best of each side is kept (least disturbed).
ROUNDS = 3
QUICK_ROUNDS = 1
SENTENCES_PER_ARTICLE = 3
CHUNK_SIZE = 64  # documents per call, as `khabar predict` reads them
RSS_SAMPLE_SECONDS = 15.0


def analyze_mixed(predictor: Predictor, texts: Sequence[str], batch_size: int) -> list[Any]:
    """The old batching: every window of ``texts`` sorted by length, batches across documents.

    Kept here only to measure what independence costs; khabar never answers this way.
    """
    prepared = predictor.prepare(texts)
    windows = sorted(
        (w for item in prepared for w in item.windows), key=lambda w: (w.length, w.doc, w.start)
    )
    scores: list[dict[int, Any]] = [{} for _ in prepared]
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        for window, window_scores in zip(
            batch, predictor.encode_batch(prepared, batch), strict=True
        ):
            scores[window.doc][window.start] = window_scores
    return [
        predictor.decode(item, predictor.merge(item, scores[doc]), None)
        for doc, item in enumerate(prepared)
    ]


def independence_cost(
    predictor: Predictor,
    texts_by_kind: Mapping[str, Sequence[str]],
    batch_size: int,
    rounds: int,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Docs/s of per-document batches and of mixed batches, and answers that differ.

    The two run chunk by chunk, back to back, in alternating order, so that a change in
    what else the machine is doing falls on both alike; wall time and this process's CPU
    time are both kept.
    """
    figures: dict[str, Any] = {}
    approaches: dict[str, Callable[[Sequence[str]], list[Any]]] = {
        "one_document_per_batch": lambda chunk: predictor.analyze(chunk, batch_size=batch_size),
        "mixed_batches": lambda chunk: analyze_mixed(predictor, chunk, batch_size),
    }
    for kind, texts in texts_by_kind.items():
        if not texts:
            continue
        wall = dict.fromkeys(approaches, 0.0)
        cpu = dict.fromkeys(approaches, 0.0)
        answers: dict[str, list[Any]] = {name: [] for name in approaches}
        chunks = [texts[i : i + CHUNK_SIZE] for i in range(0, len(texts), CHUNK_SIZE)]
        for round_ in range(rounds):
            if on_progress is not None:
                on_progress(f"{kind}: round {round_ + 1} of {rounds}")
            answers = {name: [] for name in approaches}
            for index, chunk in enumerate(chunks):
                order = list(approaches) if (index + round_) % 2 == 0 else list(approaches)[::-1]
                for name in order:
                    wall_start, cpu_start = time.perf_counter(), time.process_time()
                    answers[name] += approaches[name](chunk)
                    wall[name] += time.perf_counter() - wall_start
                    cpu[name] += time.process_time() - cpu_start
        own, mixed = answers["one_document_per_batch"], answers["mixed_batches"]
        documents = len(texts) * rounds
        docs_per_s = {name: documents / wall[name] for name in approaches}
        cpu_ms = {name: 1000 * cpu[name] / documents for name in approaches}
        figures[kind] = {
            "documents": len(texts),
            "rounds": rounds,
            "docs_per_s_one_document_per_batch": docs_per_s["one_document_per_batch"],
            "docs_per_s_mixed_batches": docs_per_s["mixed_batches"],
            "cost": 1 - docs_per_s["one_document_per_batch"] / docs_per_s["mixed_batches"],
            "cpu_ms_per_document": cpu_ms,
            "cpu_cost": cpu_ms["one_document_per_batch"] / cpu_ms["mixed_batches"] - 1,
            "answers_that_differ": sum(
                a.to_dict() != b.to_dict() for a, b in zip(own, mixed, strict=True)
            ),
            "entity_lists_that_differ": sum(
                a.to_dict()["entities"] != b.to_dict()["entities"]
                for a, b in zip(own, mixed, strict=True)
            ),
        }
    return figures


def load_texts(workload: Mapping[str, Any]) -> list[str]:
    """One document per request: three sentences, then an article, and so on."""
    articles = [a["text"] for a in workload["articles"]]
    sentences = [" ".join(s["tokens"]) for s in workload["sentences"]]
    texts: list[str] = []
    for index in range(max(len(articles), -(-len(sentences) // SENTENCES_PER_ARTICLE))):
        for k in range(SENTENCES_PER_ARTICLE):
            position = index * SENTENCES_PER_ARTICLE + k
            if position < len(sentences):
                texts.append(sentences[position])
        if index < len(articles):
            texts.append(articles[index])
    return texts


def vmrss_mb(pid: int) -> float | None:
    """Current RSS (``VmRSS``) of a live process, in MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, flags=re.MULTILINE)
    return int(match.group(1)) * 1024 / 1e6 if match else None


def loopback_run(
    options: argparse.Namespace,
    texts: Sequence[str],
    scratch: Path,
    on_event: Callable[..., None],
) -> dict[str, Any]:
    """Start ``khabar serve``, warm it, drive the load, read its RSS, stop it."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = serve_command(options.model, port, options.threads, options.batch_size)
    log_path = scratch / "load-server.log"
    result: dict[str, Any] = {"status": "ok", "command": " ".join(command)}
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            on_event(event="progress", phase="start server", done=0, total=1)
            wait_ready(base_url, process, READY_TIMEOUT_S)
            url = f"{base_url}/v1/analyze"
            asyncio.run(drive(url, texts, 4, 16, options.time_cap))  # warm-up
            result["rss_start_mb"] = vmrss_mb(process.pid)

            def done(count: int) -> None:
                on_event(
                    event="progress",
                    phase=f"load c={options.load_concurrency}",
                    done=count,
                    total=options.load_requests,
                )

            samples: list[tuple[float, float | None]] = []
            stop = threading.Event()
            began = time.perf_counter()

            def sample_rss() -> None:
                while not stop.wait(RSS_SAMPLE_SECONDS):
                    samples.append((time.perf_counter() - began, vmrss_mb(process.pid)))

            sampler = threading.Thread(target=sample_rss, daemon=True)
            sampler.start()
            try:
                figures = asyncio.run(
                    drive(
                        url,
                        texts,
                        options.load_concurrency,
                        options.load_requests,
                        options.time_cap,
                        done,
                    )
                )
            finally:
                stop.set()
                sampler.join()
            result["rss_end_mb"] = vmrss_mb(process.pid)
            result["rss_samples_mb"] = [(round(t, 1), mb) for t, mb in samples]
            result["peak_rss_mb"] = vmhwm_mb(process.pid)
            statuses = {"200": figures["ok"], **figures["error_kinds"]}
            result.update(figures)
            result["statuses"] = statuses
            result["server_errors"] = sum(n for s, n in statuses.items() if s.startswith("5"))
            result["connection_errors"] = sum(n for s, n in statuses.items() if not s.isdigit())
        except Exception as exc:
            result = {"status": "error", "note": f"{exc} | server log: {log_tail(log_path)}"}
        finally:
            stop_process(process)
    return result


def run_load(options: argparse.Namespace) -> dict[str, Any]:
    """Measure the load mode and return every raw figure."""
    from serving.predictor import Predictor

    started = time.perf_counter()
    results: dict[str, Any] = {
        "mode": "load",
        "date": dt.date.today().isoformat(),
        "started_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(options.machine),
        "settings": {
            "quick": options.quick,
            "model_dir": str(options.model),
            "threads": options.threads,
            "batch_size": options.batch_size,
            "articles": options.articles,
            "sentences": options.sentences,
            "load_requests": options.load_requests,
            "load_concurrency": options.load_concurrency,
            "time_cap": options.time_cap,
            "seed": options.seed,
            "rounds": options.rounds,
        },
    }
    progress = progress_bar(options.quiet)
    with progress, tempfile.TemporaryDirectory(prefix="khabar-load-") as tmp:
        phase = progress.add_task("load", total=1)

        on_event = phase_events(progress, phase)
        config = config_of(options.model, options.config, options.data)
        data = held_out(config, None if options.no_cache else options.cache_dir)
        workload = sample_workload(data, options.articles, options.sentences, options.seed)
        articles = [a["text"] for a in workload["articles"]]
        sentences = [" ".join(s["tokens"]) for s in workload["sentences"]]
        results["workload"] = {"articles": len(articles), "sentences": len(sentences)}

        predictor = Predictor.load(options.model, threads=options.threads)
        predictor.analyze(articles[:2], batch_size=options.batch_size)  # warm-up
        results["independence"] = independence_cost(
            predictor,
            {"articles": articles, "sentences": sentences},
            options.batch_size,
            options.rounds,
            lambda text: on_event(event="progress", phase=f"in process, {text}", done=0, total=1),
        )
        del predictor
        texts = load_texts(workload)
        results["loopback"] = loopback_run(options, texts, Path(tmp), on_event)
    results["versions"] = versions()
    results["seconds"] = time.perf_counter() - started
    return results
