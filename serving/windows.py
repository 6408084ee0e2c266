"""Overlapping windows over a document's sub-tokens, and merging their outputs.

Encoders read at most ``max_length`` tokens; news articles are often longer.
Two plans cover a long document:

- ``tokens`` (:func:`plan_windows`): equal windows, each overlapping the previous one
  by ``stride`` tokens, cut wherever the count falls;
- ``sentences`` (:func:`plan_sentence_windows`): windows of whole sentences, cut only
  where a sentence begins (:mod:`serving.sentences`), so that a sentence reads the
  same in a long article as in a short one; a sentence longer than a window is read
  in overlapping windows of its own.

Each token's prediction comes from the window in which it has the most context on
both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """A half-open range ``[start, end)`` of content tokens of document ``doc``."""

    doc: int
    start: int
    end: int

    @property
    def length(self) -> int:
        """Number of content tokens in the window."""
        return self.end - self.start


def plan_windows(doc: int, n_tokens: int, max_content: int, stride: int) -> list[Window]:
    """Cover ``n_tokens`` content tokens with as few windows as the limit allows, all equal.

    A long document gets the fewest windows of at most ``max_content`` tokens that
    still overlap by ``stride``, and those windows share its tokens evenly. Windows of
    one length pad nothing when batched together, and a short last window would cost
    a full one anyway once padded: a 700-token article reads 4 x 224 tokens instead of
    3 x 254 + 130 padded to 254.

    Args:
        doc: Index of the document the windows belong to.
        n_tokens: Number of content tokens (without special tokens).
        max_content: Window size limit in content tokens (the encoder's limit minus specials).
        stride: The least number of tokens consecutive windows share.

    Returns:
        Windows in order; one empty window for an empty document, so that every
        document still gets topic scores.
    """
    if max_content <= 0 or not 0 <= stride < max_content:
        raise ValueError(f"need 0 <= stride ({stride}) < window size ({max_content})")
    if n_tokens <= max_content:
        return [Window(doc, 0, n_tokens)]
    count = -(-(n_tokens - stride) // (max_content - stride))
    size = min(max_content, -(-(n_tokens + (count - 1) * stride) // count) + 1)
    step = -(-(n_tokens - size) // (count - 1))
    starts = [min(i * step, n_tokens - size) for i in range(count)]
    return [Window(doc, start, start + size) for start in starts]


def plan_sentence_windows(
    doc: int, n_tokens: int, max_content: int, stride: int, sentence_starts: Sequence[int]
) -> list[Window]:
    """Cover ``n_tokens`` content tokens with windows of whole sentences.

    A document that fits one window is one window. A longer one is cut only at
    ``sentence_starts``: each window takes whole sentences up to ``max_content``
    tokens, ending at the sentence start closest to an even share of what is left
    (so the windows come out about equally long, as few as the limit allows for whole
    sentences). A sentence longer than ``max_content`` is read alone, in the
    overlapping windows :func:`plan_windows` gives it. Windows never overlap
    otherwise: every token is read once.

    Args:
        doc: Index of the document the windows belong to.
        n_tokens: Number of content tokens (without special tokens).
        max_content: Window size limit in content tokens.
        stride: Overlap of the windows inside a sentence longer than ``max_content``.
        sentence_starts: Token positions where a sentence begins (any order).

    Returns:
        Windows in order, covering ``[0, n_tokens)``.
    """
    if max_content <= 0 or not 0 <= stride < max_content:
        raise ValueError(f"need 0 <= stride ({stride}) < window size ({max_content})")
    if n_tokens <= max_content:
        return [Window(doc, 0, n_tokens)]
    cuts = sorted({c for c in sentence_starts if 0 < c < n_tokens})
    windows: list[Window] = []
    start = 0
    while start < n_tokens:
        remaining = n_tokens - start
        if remaining <= max_content:
            windows.append(Window(doc, start, n_tokens))
            break
        target = start + remaining / -(-remaining // max_content)
        fitting = [c for c in cuts if start < c <= start + max_content]
        if fitting:
            end = min(fitting, key=lambda c: (abs(c - target), -c))
            windows.append(Window(doc, start, end))
        else:  # one sentence longer than a window: overlapping windows of its own
            end = next((c for c in cuts if c > start), n_tokens)
            windows += [
                Window(doc, start + w.start, start + w.end)
                for w in plan_windows(doc, end - start, max_content, stride)
            ]
        start = end
    return windows


def merge_token_scores(
    n_tokens: int, windows: list[Window], scores: list[np.ndarray]
) -> np.ndarray:
    """Keep, for each token, the scores of the window where it sits furthest from an edge.

    Args:
        n_tokens: Number of content tokens of the document.
        windows: The document's windows.
        scores: Per window, an array ``[window.length, n_labels]``.

    Returns:
        Array ``[n_tokens, n_labels]``.
    """
    n_labels = scores[0].shape[1] if scores else 0
    merged = np.zeros((n_tokens, n_labels), dtype=np.float32)
    best_context = np.full(n_tokens, -1, dtype=np.int64)
    for window, window_scores in zip(windows, scores, strict=True):
        positions = np.arange(window.length)
        context = np.minimum(positions, window.length - 1 - positions)
        # The document's first and last tokens have full context on their open side.
        if window.start == 0:
            context = np.maximum(context, window.length - 1 - positions)
        if window.end == n_tokens:
            context = np.maximum(context, positions)
        target = slice(window.start, window.end)
        better = context > best_context[target]
        merged[target][better] = window_scores[better]
        best_context[target][better] = context[better]
    return merged


def merge_document_scores(windows: list[Window], scores: list[np.ndarray]) -> np.ndarray:
    """Average per-window document logits, weighted by how many tokens each window read."""
    weights = np.array([max(w.length, 1) for w in windows], dtype=np.float32)
    stacked = np.stack(scores).astype(np.float32)
    return (stacked * weights[:, None]).sum(axis=0) / weights.sum()
