"""Words with character offsets, and their sub-tokens.

Entities are predicted per word, on the word's first sub-token (the labelling
used at training time), so both training and serving split text into words
here and hand the tokenizer pre-tokenised words: one word, one or more pieces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from serving.errors import ModelLoadError

# A word is a run of letters, digits and the marks that sit on letters; any other
# visible character (punctuation, symbols, emoji) is a word of its own.
_MARKS = "\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640"
WORD_PATTERN = re.compile(rf"[\w{_MARKS}]+|[^\w\s{_MARKS}]")


@dataclass(frozen=True)
class Word:
    """One word: its text and half-open ``[start, end)`` offsets in the text it came from."""

    text: str
    start: int
    end: int


def split_words(text: str) -> list[Word]:
    """Split text into words with offsets (letters/digits runs, single symbols).

    >>> [w.text for w in split_words("قال أحمد: 20%")]
    ['قال', 'أحمد', ':', '20', '%']
    """
    return [Word(m.group(), m.start(), m.end()) for m in WORD_PATTERN.finditer(text)]


@dataclass(frozen=True)
class Encoded:
    """Sub-tokens of one document, without special tokens.

    Attributes:
        ids: Token ids, shape ``[n_tokens]``.
        word_first_token: For each word, the index of its first sub-token, or -1
            when the tokenizer produced no piece for it (such a word is tagged O).
    """

    ids: np.ndarray = field(repr=False)
    word_first_token: np.ndarray = field(repr=False)

    @property
    def n_tokens(self) -> int:
        """Number of content tokens."""
        return int(self.ids.shape[0])


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a ``tokenizer.json`` with padding and truncation switched off.

    Windowing and padding are done by khabar itself so that long documents are
    never silently cut.
    """
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on bad files
        raise ModelLoadError(f"cannot read tokenizer {path}: {exc}") from exc
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def tokenise_words(tokenizer: Tokenizer, documents: Sequence[Sequence[str]]) -> list[Encoded]:
    """Tokenise pre-split words of many documents in one batched call.

    Args:
        tokenizer: A tokenizer from :func:`load_tokenizer`.
        documents: For each document, its words.

    Returns:
        One :class:`Encoded` per document.
    """
    non_empty = [i for i, words in enumerate(documents) if len(words) > 0]
    encodings = tokenizer.encode_batch(
        [list(documents[i]) for i in non_empty], is_pretokenized=True, add_special_tokens=False
    )
    results = [
        Encoded(ids=np.zeros(0, dtype=np.int64), word_first_token=np.zeros(0, dtype=np.int64))
        for _ in documents
    ]
    for doc_index, encoding in zip(non_empty, encodings, strict=True):
        n_words = len(documents[doc_index])
        word_ids = np.array([-1 if w is None else w for w in encoding.word_ids], dtype=np.int64)
        first = np.full(n_words, -1, dtype=np.int64)
        positions = np.arange(word_ids.shape[0], dtype=np.int64)
        valid = word_ids >= 0
        # Reverse order so that the earliest position of each word is written last.
        first[word_ids[valid][::-1]] = positions[valid][::-1]
        results[doc_index] = Encoded(
            ids=np.asarray(encoding.ids, dtype=np.int64), word_first_token=first
        )
    return results
