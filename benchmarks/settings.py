"""What every benchmark module shares: paths, engine names, run sizes and event types.

One definition of each name, so the stages (workload, engines, HTTP driver, report) agree
on what an engine is called and how large a quick or full run is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

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


Event = Callable[..., None]


class SkipEngine(Exception):
    """The engine cannot be measured here; the reason goes into the results as a note."""
