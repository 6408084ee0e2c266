"""Statistics and targets: percentiles, padding, sampling, ratios and the pass/miss table.

Pure functions of numbers and results dictionaries: no model, no clock, no files, so the
report and the tests can compute them again from a results JSON.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.settings import (
    BERT_BASE,
    HTTP_INT8,
    LATENCY_BAND_WORDS,
    ONNX_FP32,
    ONNX_INT8,
    TORCH_FP32,
)

if TYPE_CHECKING:
    pass

TARGET_INT8_VS_TORCH = 2.0
TARGET_INT8_VS_BERT = 6.0
TARGET_F1_DROP = 1.0
TARGET_P50_MS = 100.0
TARGET_HTTP_SHARE = 0.85
TARGET_RSS_MB = 600.0


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
