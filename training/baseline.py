"""TF-IDF + linear SVM baselines for the topic head.

A transformer topic head has to beat these numbers to be worth its size. Two tasks, the
ones ANT can score without rules:

* the section (politics, economy, sport, technology, culture) of every article whose
  section labels are known, as single-label classification;
* ``middle_east`` on the articles where it is known (the politics articles of the
  sources that file Middle East news separately), as a binary task.

Examples whose labels are unknown are left out of both training and scoring rather than
counted as negatives.

Run on the recipe's corpus with ``khabar evaluate --baseline``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from serving.errors import ConfigError, MissingExtraError
from training.data.topics import (
    TopicExample,
)

logger = logging.getLogger(__name__)


def _sklearn() -> tuple:
    """Import scikit-learn on first use: it belongs to the ``train`` extra only."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.svm import LinearSVC
    except ImportError:
        raise MissingExtraError(
            "the TF-IDF baseline needs scikit-learn: pip install 'khabar[train]'"
        ) from None
    return TfidfVectorizer, LinearSVC, accuracy_score, f1_score


def _primary_section(example: TopicExample, sections: Sequence[str]) -> str | None:
    values = [example.labels.get(name) for name in sections]
    if any(value is None for value in values):
        return None
    positives = [name for name, value in zip(sections, values, strict=True) if value >= 0.5]
    return positives[0] if len(positives) == 1 else None


def _fit_score(
    train_texts: list[str],
    train_y: list[str],
    test_texts: list[str],
    test_y: list[str],
    analyzer: str,
    ngram_range: tuple[int, int],
    min_df: int,
    c: float,
) -> dict:
    tfidf_vectorizer, linear_svc, accuracy_score, f1_score = _sklearn()
    vectorizer = tfidf_vectorizer(
        analyzer=analyzer,
        ngram_range=tuple(ngram_range),
        min_df=min_df,
        sublinear_tf=True,
        max_features=300_000,
        dtype=np.float32,
    )
    train_x = vectorizer.fit_transform(train_texts)
    model = linear_svc(C=c)
    model.fit(train_x, train_y)
    predicted = model.predict(vectorizer.transform(test_texts))
    classes = sorted(set(train_y) | set(test_y))
    per_class = f1_score(test_y, predicted, labels=classes, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(test_y, predicted)),
        "macro_f1": float(f1_score(test_y, predicted, average="macro", zero_division=0)),
        "f1": {name: float(value) for name, value in zip(classes, per_class, strict=True)},
        "n_train": len(train_texts),
        "n_test": len(test_texts),
        "n_features": len(vectorizer.vocabulary_),
    }


def tfidf_svm_baseline(
    train: list[TopicExample],
    test: list[TopicExample],
    sections: Sequence[str],
    *,
    region_label: str = "middle_east",
    analyzer: str = "word",
    ngram_range: tuple[int, int] = (1, 1),
    min_df: int = 2,
    c: float = 0.5,
) -> dict:
    """Train and score the section and region baselines.

    Args:
        train: Training examples; those with an unknown label are skipped per task.
        test: Examples to score; same rule.
        sections: The section labels; an example takes part in the section task only
            when all of them are known and exactly one is positive.
        region_label: The binary label of the second task.
        analyzer: ``"word"``, ``"char"`` or ``"char_wb"`` (scikit-learn's TF-IDF).
        ngram_range: N-gram lengths for ``analyzer``.
        min_df: Minimum document frequency of a feature, so typos and one-off names do
            not fill the vocabulary.
        c: The SVM's regularisation constant.

    Returns:
        ``{"section": {...}, region_label: {...}, "settings": {...}}``; each task has
        ``accuracy``, ``macro_f1``, per-class ``f1`` and the example counts.

    Raises:
        ConfigError: A task has no training or no test examples.
    """
    settings = {"analyzer": analyzer, "ngram_range": list(ngram_range), "min_df": min_df, "c": c}
    result: dict = {"settings": settings}

    def section_data(examples: list[TopicExample]) -> tuple[list[str], list[str]]:
        pairs = [(e.text, _primary_section(e, sections)) for e in examples]
        kept = [(text, label) for text, label in pairs if label is not None]
        return [text for text, _ in kept], [label for _, label in kept]

    def region_data(examples: list[TopicExample]) -> tuple[list[str], list[str]]:
        kept = [e for e in examples if e.labels.get(region_label) is not None]
        labels = ["yes" if e.labels[region_label] >= 0.5 else "no" for e in kept]
        return [e.text for e in kept], labels

    for task, extract in (("section", section_data), (region_label, region_data)):
        train_texts, train_y = extract(train)
        test_texts, test_y = extract(test)
        if not train_texts or not test_texts:
            raise ConfigError(
                f"baseline task {task!r}: {len(train_texts)} training and "
                f"{len(test_texts)} test examples with known labels; both must be non-empty"
            )
        started = time.perf_counter()
        result[task] = _fit_score(
            train_texts, train_y, test_texts, test_y, analyzer, ngram_range, min_df, c
        )
        result[task]["seconds"] = round(time.perf_counter() - started, 1)
        logger.info(
            "%s baseline: accuracy %.4f on %d examples",
            task,
            result[task]["accuracy"],
            result[task]["n_test"],
        )
    return result
