"""Training features built with the serving code path (normalise, split, tokenise, window).

The model learns on exactly the words and windows it will see at serving time:
CoNLL tokens are joined into text and re-split by :func:`serving.tokenise.split_words`,
and each resulting word inherits its CoNLL token's tag.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from serving.metadata import SpecialTokens
from serving.normalise import NormaliserSettings, normalise
from serving.tokenise import Word, split_words, tokenise_words
from serving.windows import plan_windows
from training.data.conll import Sentence
from training.data.topics import TopicExample

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EntityFeature:
    """One encoder window of a sentence with a tag id on each word's first sub-token."""

    input_ids: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class TopicFeature:
    """One document's first window with topic targets and a mask (0 = label unknown)."""

    input_ids: np.ndarray
    targets: np.ndarray
    mask: np.ndarray


def word_tags(sentence: Sentence, words: Sequence[Word], to_original: Sequence[int]) -> list[str]:
    """Tag of each serving word: its CoNLL token's tag, ``I-X`` after the token's first word."""
    offsets = sentence.token_offsets()
    starts = [start for start, _ in offsets]
    tags = []
    previous_token = -1
    for word in words:
        original_start = to_original[word.start]
        token = bisect.bisect_right(starts, original_start) - 1
        tag = sentence.tags[token]
        if token == previous_token and tag != "O":
            tag = "I-" + tag[2:]
        tags.append(tag)
        previous_token = token
    return tags


def _wrap(content: np.ndarray, special: SpecialTokens) -> np.ndarray:
    return np.concatenate(
        [[special.cls_id], content, [special.sep_id]], dtype=np.int64, casting="unsafe"
    )


def entity_features(
    sentences: Sequence[Sentence],
    tokenizer: Tokenizer,
    tags: Sequence[str],
    special: SpecialTokens,
    normaliser: NormaliserSettings,
    max_length: int,
    stride: int,
) -> list[EntityFeature]:
    """Windows of every sentence with word-level labels on first sub-tokens."""
    tag_to_id = {tag: index for index, tag in enumerate(tags)}
    normalised = [normalise(s.text, normaliser) for s in sentences]
    words = [split_words(n.text) for n in normalised]
    encoded = tokenise_words(tokenizer, [[w.text for w in ws] for ws in words])
    features = []
    for sentence, norm, ws, enc in zip(sentences, normalised, words, encoded, strict=True):
        tag_ids = np.array(
            [tag_to_id[t] for t in word_tags(sentence, ws, norm.to_original)], dtype=np.int64
        )
        token_labels = np.full(enc.n_tokens, IGNORE_INDEX, dtype=np.int64)
        has_piece = enc.word_first_token >= 0
        token_labels[enc.word_first_token[has_piece]] = tag_ids[has_piece]
        for window in plan_windows(0, enc.n_tokens, max_length - 2, stride):
            labels = np.full(window.length + 2, IGNORE_INDEX, dtype=np.int64)
            labels[1:-1] = token_labels[window.start : window.end]
            # In an overlapping window, words already labelled with more context elsewhere
            # still train here: overlap only adds examples, it never drops one.
            features.append(
                EntityFeature(_wrap(enc.ids[window.start : window.end], special), labels)
            )
    return features


def sentence_token_counts(
    sentences: Sequence[Sentence], tokenizer: Tokenizer, normaliser: NormaliserSettings
) -> list[int]:
    """Content tokens of each sentence as serving tokenises it."""
    words = [[w.text for w in split_words(normalise(s.text, normaliser).text)] for s in sentences]
    return [enc.n_tokens for enc in tokenise_words(tokenizer, words)]


def pack_training_documents(
    sentences: Sequence[Sentence],
    token_counts: Sequence[int],
    rng: random.Random,
    min_tokens: int,
    max_tokens: int,
) -> list[Sentence]:
    """Consecutive sentences joined into documents of a random token budget each.

    Each document draws its budget uniformly from ``[min_tokens, max_tokens]`` and takes
    sentences in corpus order while they fit (always at least one), so boundaries fall
    at random places and lengths span everything from a short paragraph to a full
    window. A sentence longer than the window is windowed later, as serving does.
    """
    documents: list[Sentence] = []
    index = 0
    while index < len(sentences):
        budget = rng.randint(min_tokens, max(min_tokens, max_tokens))
        group = [sentences[index]]
        total = token_counts[index]
        index += 1
        while index < len(sentences) and total + token_counts[index] <= budget:
            group.append(sentences[index])
            total += token_counts[index]
            index += 1
        documents.append(Sentence.join(group))
    return documents


def topic_features(
    examples: Sequence[TopicExample],
    tokenizer: Tokenizer,
    labels: Sequence[str],
    special: SpecialTokens,
    normaliser: NormaliserSettings,
    max_length: int,
) -> list[TopicFeature]:
    """First window of each document, with targets and a known-label mask."""
    normalised = [normalise(e.text, normaliser) for e in examples]
    words = [[w.text for w in split_words(n.text)] for n in normalised]
    encoded = tokenise_words(tokenizer, words)
    features = []
    for example, enc in zip(examples, encoded, strict=True):
        targets = np.zeros(len(labels), dtype=np.float32)
        mask = np.zeros(len(labels), dtype=np.float32)
        for index, label in enumerate(labels):
            value = example.labels.get(label)
            if value is not None:
                targets[index] = float(value)
                mask[index] = 1.0
        features.append(TopicFeature(_wrap(enc.ids[: max_length - 2], special), targets, mask))
    return features
