"""Packed entity training documents and document-level evaluation units."""

from __future__ import annotations

import random

import pytest

from training.data.conll import Sentence
from training.evaluate import pack_sentences
from training.features import pack_training_documents


def sentence(n: int, tag: str = "O") -> Sentence:
    return Sentence(tuple(f"w{n}_{i}" for i in range(n)), tuple([tag] * n))


SENTENCES = [sentence(n) for n in (3, 7, 2, 9, 4, 4, 1, 12, 5, 6, 3, 8)]


def test_packing_keeps_every_sentence_in_order_within_its_budget():
    counts = [len(s.tokens) for s in SENTENCES]
    documents = pack_training_documents(SENTENCES, counts, random.Random(3), 5, 20)
    flat = [t for d in documents for t in d.tokens]
    assert flat == [t for s in SENTENCES for t in s.tokens]
    assert all(len(d.tokens) <= 20 or len(d.tokens) in counts for d in documents)
    assert len(documents) < len(SENTENCES)  # some sentences do share a document
    assert any(len(d.tokens) > max(counts) for d in documents) or len(documents) > 1


def test_packing_is_repeatable_and_varies_with_the_seed():
    counts = [len(s.tokens) for s in SENTENCES]

    def lengths(seed: int) -> list[int]:
        return [
            len(d.tokens)
            for d in pack_training_documents(SENTENCES, counts, random.Random(seed), 5, 20)
        ]

    assert lengths(1) == lengths(1)
    assert any(lengths(1) != lengths(seed) for seed in range(2, 8))


def test_a_sentence_over_budget_still_forms_its_own_document():
    long = [sentence(30), sentence(2)]
    documents = pack_training_documents(long, [30, 2], random.Random(0), 4, 10)
    assert [len(d.tokens) for d in documents] == [30, 2]


def test_evaluation_documents_join_consecutive_sentences_with_single_spaces():
    docs = pack_sentences(SENTENCES, 5)
    assert [len(d.tokens) for d in docs] == [25, 28, 11]
    assert docs[0].text == " ".join(s.text for s in SENTENCES[:5])
    assert docs[0].tags == tuple(t for s in SENTENCES[:5] for t in s.tags)
    with pytest.raises(ValueError):
        pack_sentences(SENTENCES, 0)
