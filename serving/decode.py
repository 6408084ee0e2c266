"""From scores to labels: BIO tags to word spans, topic scores to labels over threshold.

Pure numpy, shared by serving and by training-time evaluation, so the F1 we
report is computed by the decoder users run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

OUTSIDE = "O"


def bio_tags(entity_types: Sequence[str]) -> list[str]:
    """The tag list of a BIO head: ``O`` then ``B-X``, ``I-X`` for each type, in order."""
    tags = [OUTSIDE]
    for entity_type in entity_types:
        tags += [f"B-{entity_type}", f"I-{entity_type}"]
    return tags


@dataclass(frozen=True)
class WordSpan:
    """An entity over words ``[first, last]`` (inclusive word indices) with its mean probability."""

    label: str
    first: int
    last: int
    score: float


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function, stable for large negative logits."""
    return 0.5 * (1.0 + np.tanh(0.5 * logits))


def allowed_transitions(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Which tag may follow which under strict IOB2, and which may start a sequence.

    ``I-X`` may only follow ``B-X`` or ``I-X``; a sequence cannot start with ``I-X``.
    """
    n = len(tags)
    transition = np.ones((n, n), dtype=bool)
    start = np.ones(n, dtype=bool)
    for j, tag in enumerate(tags):
        if tag.startswith("I-"):
            entity_type = tag[2:]
            start[j] = False
            for i, previous in enumerate(tags):
                transition[i, j] = previous in (f"B-{entity_type}", f"I-{entity_type}")
    return transition, start


def viterbi_bio(log_probs: np.ndarray, tags: Sequence[str]) -> np.ndarray:
    """Best tag sequence under the IOB2 constraints (no ``I-X`` without its ``B-X``).

    Args:
        log_probs: ``[n_words, n_tags]`` log-probabilities.
        tags: Tag names in column order.

    Returns:
        ``[n_words]`` tag indices.
    """
    n_words, n_tags = log_probs.shape
    if n_words == 0:
        return np.zeros(0, dtype=np.int64)
    transition, start = allowed_transitions(tags)
    penalty = np.where(transition, 0.0, -np.inf)
    score = np.where(start, log_probs[0], -np.inf)
    back = np.zeros((n_words, n_tags), dtype=np.int64)
    for t in range(1, n_words):
        candidates = score[:, None] + penalty
        back[t] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[t]
    path = np.zeros(n_words, dtype=np.int64)
    path[-1] = int(score.argmax())
    for t in range(n_words - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def decode_tags(log_probs: np.ndarray, tags: Sequence[str], method: str = "viterbi") -> np.ndarray:
    """Tag indices per word with the model's decoder (``viterbi`` or ``argmax``)."""
    if method == "viterbi":
        return viterbi_bio(log_probs, tags)
    if method == "argmax":
        return log_probs.argmax(axis=-1) if log_probs.size else np.zeros(0, dtype=np.int64)
    raise ValueError(f"unknown decoder {method!r}: use 'viterbi' or 'argmax'")


def tags_to_spans(tag_ids: np.ndarray, probs: np.ndarray, tags: Sequence[str]) -> list[WordSpan]:
    """Group IOB2 tags into word spans; a stray ``I-X`` (argmax only) opens a new span.

    Args:
        tag_ids: ``[n_words]`` tag indices.
        probs: ``[n_words, n_tags]`` probabilities, for each span's score.
        tags: Tag names in column order.
    """
    spans: list[WordSpan] = []
    current: tuple[str, int] | None = None
    word_scores: list[float] = []

    def close(last: int) -> None:
        if current is not None:
            spans.append(WordSpan(current[0], current[1], last, float(np.mean(word_scores))))

    for index, tag_id in enumerate(tag_ids):
        tag = tags[int(tag_id)]
        prob = float(probs[index, int(tag_id)])
        if tag.startswith("I-") and current is not None and current[0] == tag[2:]:
            word_scores.append(prob)
            continue
        close(index - 1)
        current, word_scores = None, []
        if tag != OUTSIDE:
            current, word_scores = (tag[2:], index), [prob]
    close(len(tag_ids) - 1)
    return spans


def topics_over_threshold(
    scores: np.ndarray, labels: Sequence[str], thresholds: Mapping[str, float]
) -> list[tuple[str, float]]:
    """Labels whose score reaches their threshold, best first."""
    chosen = [
        (label, float(score))
        for label, score in zip(labels, scores, strict=True)
        if score >= thresholds.get(label, 0.5)
    ]
    return sorted(chosen, key=lambda item: -item[1])
