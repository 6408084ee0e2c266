"""Metrics computed through a :class:`Predictor`: what is measured is what users get.

Entities: seqeval micro-F1 (strict IOB2) overall and per type, on the corpus'
own tokens, from the character spans the predictor returns. Topics: per-label
precision/recall/F1 over the examples where the label is known, micro and macro
F1, section accuracy (primary = best-scoring section) and region accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serving.predictor import DEFAULT_BATCH_SIZE, Predictor
from serving.spans import Entity
from training.config import KhabarConfig
from training.data.conll import Sentence
from training.data.corpora import Corpora
from training.data.entity_spans import SpanDocument, read_span_documents
from training.data.topics import TopicExample


def spans_to_token_tags(sentence: Sentence, entities: Sequence[Entity]) -> list[str]:
    """IOB2 tags on the sentence's tokens from predicted character spans."""
    tags = ["O"] * len(sentence.tokens)
    offsets = sentence.token_offsets()
    for entity in sorted(entities, key=lambda e: e.start):
        covered = [
            i for i, (start, end) in enumerate(offsets) if start < entity.end and entity.start < end
        ]
        if not covered or any(tags[i] != "O" for i in covered):
            continue
        tags[covered[0]] = f"B-{entity.label}"
        for i in covered[1:]:
            tags[i] = f"I-{entity.label}"
    return tags


def entity_report(
    predictor: Predictor, sentences: Sequence[Sentence], batch_size: int = DEFAULT_BATCH_SIZE
) -> dict[str, Any]:
    """Entity micro-F1 and per-type precision/recall/F1 (seqeval, strict IOB2)."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    results = predictor.analyze([s.text for s in sentences], batch_size=batch_size)
    predicted = [
        spans_to_token_tags(s, r.entities) for s, r in zip(sentences, results, strict=True)
    ]
    gold = [list(s.tags) for s in sentences]
    report = classification_report(
        gold, predicted, mode="strict", scheme=IOB2, output_dict=True, zero_division=0
    )
    per_type = {
        label: {
            "precision": round(100 * float(values["precision"]), 2),
            "recall": round(100 * float(values["recall"]), 2),
            "f1": round(100 * float(values["f1-score"]), 2),
            "support": int(values["support"]),
        }
        for label, values in report.items()
        if not label.endswith("avg")
    }
    micro = report["micro avg"]
    return {
        "micro_f1": round(100 * float(micro["f1-score"]), 2),
        "precision": round(100 * float(micro["precision"]), 2),
        "recall": round(100 * float(micro["recall"]), 2),
        "per_type": per_type,
        "n_sentences": len(sentences),
    }


def pack_sentences(sentences: Sequence[Sentence], per_document: int) -> list[Sentence]:
    """Consecutive sentences joined (single spaces) into documents of ``per_document``.

    ANERcorp's sentences are in article order, so a packed document reads like the
    stretch of article a user sends; the last document may be shorter.
    """
    if per_document < 1:
        raise ValueError(f"sentences per document must be >= 1, not {per_document}")
    return [
        Sentence.join(sentences[start : start + per_document])
        for start in range(0, len(sentences), per_document)
    ]


def entity_document_report(
    predictor: Predictor,
    sentences: Sequence[Sentence],
    sizes: Sequence[int] = (1, 5, 20),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, Any]:
    """Entity F1 with sentences packed into documents of each size; headline = largest size.

    Users send whole articles, and a model can score well one sentence at a time while
    failing on documents: the figure that counts (and that every dev-set choice uses)
    is the one on the longest documents. The returned report is that size's
    :func:`entity_report`, with ``sentences_per_document`` and ``by_document`` (every
    size's micro and per-type figures) added.
    """
    if not sizes:
        raise ValueError("need at least one document size")
    by_document: dict[str, dict[str, Any]] = {}
    for size in sorted(set(sizes)):
        report = entity_report(predictor, pack_sentences(sentences, size), batch_size)
        report["n_sentences"] = len(sentences)
        by_document[str(size)] = report
    headline = str(max(sizes))
    summary = {
        size: {k: v for k, v in report.items() if k != "n_sentences"}
        for size, report in by_document.items()
    }
    return {
        **by_document[headline],
        "sentences_per_document": int(headline),
        "by_document": summary,
    }


def span_report(
    predictor: Predictor, documents: Sequence[SpanDocument], batch_size: int = DEFAULT_BATCH_SIZE
) -> dict[str, Any]:
    """Exact-span entity F1 on texts as sent (no re-tokenisation), overall and per type.

    A predicted entity counts only if its ``(start, end, label)`` equals a gold span:
    the same strictness as seqeval's strict IOB2 on tokens, applied to character spans.
    """
    results = predictor.analyze([d.text for d in documents], batch_size=batch_size)
    counts: dict[str, list[int]] = {}
    for document, result in zip(documents, results, strict=True):
        gold = set(document.spans)
        predicted = {(e.start, e.end, e.label) for e in result.entities}
        for span in gold | predicted:
            row = counts.setdefault(span[2], [0, 0, 0])  # tp, fp, fn
            row[0 if span in gold and span in predicted else 1 if span in predicted else 2] += 1
    per_type = {}
    for label, (tp, fp, fn) in sorted(counts.items()):
        precision, recall, f1 = _f1(tp, fp, fn)
        per_type[label] = {
            "precision": round(100 * precision, 2),
            "recall": round(100 * recall, 2),
            "f1": round(100 * f1, 2),
            "support": tp + fn,
        }
    tp, fp, fn = (sum(row[i] for row in counts.values()) for i in range(3))
    precision, recall, f1 = _f1(tp, fp, fn)
    return {
        "micro_f1": round(100 * f1, 2),
        "precision": round(100 * precision, 2),
        "recall": round(100 * recall, 2),
        "per_type": per_type,
        "n_documents": len(documents),
        "n_gold": tp + fn,
    }


def topic_probabilities(
    predictor: Predictor, examples: Sequence[TopicExample], batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """Topic probabilities ``[n_examples, n_labels]`` in the model's label order."""
    labels = predictor.metadata.topic_labels
    results = predictor.analyze([e.text for e in examples], batch_size=batch_size)
    return np.array([[r.topic_scores[label] for label in labels] for r in results])


def topic_targets(
    examples: Sequence[TopicExample], labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Targets ``[examples, labels]`` and which of them are known (unknown ones are 0)."""
    targets = np.zeros((len(examples), len(labels)), dtype=np.float32)
    known = np.zeros((len(examples), len(labels)), dtype=bool)
    for row, example in enumerate(examples):
        for col, label in enumerate(labels):
            value = example.labels.get(label)
            if value is not None:
                targets[row, col] = value
                known[row, col] = True
    return targets, known


def _f1(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def tune_thresholds(
    probabilities: np.ndarray,
    examples: Sequence[TopicExample],
    labels: Sequence[str],
    grid: Sequence[float] = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2)),
) -> dict[str, float]:
    """Per-label threshold with the best F1 on the known examples (0.5 if none known)."""
    targets, known = topic_targets(examples, labels)
    thresholds: dict[str, float] = {}
    for col, label in enumerate(labels):
        rows = known[:, col]
        if not rows.any() or targets[rows, col].sum() == 0:
            thresholds[label] = 0.5
            continue
        gold = targets[rows, col] > 0.5
        best = (-1.0, 0.5)
        for threshold in grid:
            predicted = probabilities[rows, col] >= threshold
            tp = float(np.sum(predicted & gold))
            fp = float(np.sum(predicted & ~gold))
            fn = float(np.sum(~predicted & gold))
            f1 = _f1(tp, fp, fn)[2]
            # Prefer the threshold closest to 0.5 among equals: less tuned to dev noise.
            if f1 > best[0] + 1e-9 or (
                abs(f1 - best[0]) <= 1e-9 and abs(threshold - 0.5) < abs(best[1] - 0.5)
            ):
                best = (f1, float(threshold))
        thresholds[label] = best[1]
    return thresholds


def topic_report(
    probabilities: np.ndarray,
    examples: Sequence[TopicExample],
    labels: Sequence[str],
    sections: Sequence[str],
    thresholds: Mapping[str, float],
) -> dict[str, Any]:
    """Per-label P/R/F1 (known labels only), micro/macro F1, section and region accuracy."""
    targets, known = topic_targets(examples, labels)
    per_label: dict[str, dict[str, float]] = {}
    totals = np.zeros(3)
    for col, label in enumerate(labels):
        rows = known[:, col]
        gold = targets[rows, col] > 0.5
        predicted = probabilities[rows, col] >= thresholds.get(label, 0.5)
        counts = np.array(
            [np.sum(predicted & gold), np.sum(predicted & ~gold), np.sum(~predicted & gold)],
            dtype=float,
        )
        totals += counts
        precision, recall, f1 = _f1(*counts)
        per_label[label] = {
            "precision": round(100 * float(precision), 2),
            "recall": round(100 * float(recall), 2),
            "f1": round(100 * float(f1), 2),
            "positives": int(gold.sum()),
            "known": int(rows.sum()),
            "accuracy": round(100 * float(np.mean(predicted == gold)), 2) if rows.any() else 0.0,
        }
    scored = [v["f1"] for v in per_label.values() if v["positives"] > 0]
    report: dict[str, Any] = {
        "micro_f1": round(100 * float(_f1(*totals)[2]), 2),
        "macro_f1": round(float(np.mean(scored)), 2) if scored else 0.0,
        "per_label": per_label,
        "n_documents": len(examples),
    }
    section_cols = [labels.index(s) for s in sections]
    if section_cols:
        section_known = known[:, section_cols].all(axis=1) & (
            targets[:, section_cols].sum(axis=1) == 1
        )
        if section_known.any():
            gold_section = targets[section_known][:, section_cols].argmax(axis=1)
            predicted_section = probabilities[section_known][:, section_cols].argmax(axis=1)
            report["section_accuracy"] = round(
                100 * float(np.mean(gold_section == predicted_section)), 2
            )
            report["section_documents"] = int(section_known.sum())
    return report


def evaluate_model(
    predictor: Predictor, config: KhabarConfig, corpora: Corpora, split: str
) -> dict[str, Any]:
    """Entity and topic reports of one split (``dev`` or ``test``) of a recipe's corpora."""
    report: dict[str, Any] = {}
    sentences = getattr(corpora, f"entity_{split}")
    if predictor.metadata.entity_types and sentences:
        sizes = config.entities.document_sentences if config.entities else [1]
        report["entity"] = entity_document_report(predictor, sentences, sizes)
    entities = config.entities
    if predictor.metadata.entity_types and entities and entities.fignews_annotations:
        annotations = config.recipe_path(entities.fignews_annotations) / f"{split}.jsonl"
        texts = config.root / entities.fignews_texts if entities.fignews_texts else None
        if annotations.is_file() and texts is not None and texts.is_file():
            documents = read_span_documents(annotations, texts, list(entities.types))
            report["fignews_entity"] = span_report(predictor, documents)
    examples = getattr(corpora, f"topic_{split}")
    if predictor.metadata.topic_labels and examples and config.topics is not None:
        probabilities = topic_probabilities(predictor, examples)
        report["topic"] = topic_report(
            probabilities,
            examples,
            predictor.metadata.topic_labels,
            config.topics.sections,
            predictor.metadata.thresholds,
        )
    return report
