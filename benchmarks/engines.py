"""In-process engines: building each one, timing batches and single calls, accuracy.

Each engine runs in a worker subprocess of its own (``python -m benchmarks.run --worker``),
so its peak RSS is its own and a crash or hang costs one engine. Workers report progress
and results as JSON lines on stdout; :func:`run_worker` reads them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.machine import child_env, log_tail, peak_rss_mb, ru_maxrss_mb
from benchmarks.settings import (
    BERT_BASE_SHAPE,
    ONNX_VARIANTS,
    REPO_ROOT,
    TORCH_FP32,
    WARMUP_DOCUMENTS,
    Event,
    SkipEngine,
)
from benchmarks.stats import chunked, in_band, percentiles, saved_epoch, word_count

if TYPE_CHECKING:
    from serving.predictor import Predictor


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
    from training.rundir import CHECKPOINT_DIR, RUN_NAME
    from training.torch_session import TorchSession

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
        run_tokenizer = run_dir / TOKENIZER_NAME
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
            env=child_env(),
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
        return {"status": "error", "note": f"worker exited {code}: {log_tail(log_path)}"}
    return outcome["result"]
