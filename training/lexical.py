"""Fit the lexical topic head (``serving/lexical.py``) and let the dev set decide on it.

The features are built with the serving code itself: the predictor's own windows,
and :func:`serving.lexical.window_tfidf` for each window, averaged by window length
the way the predictor merges window logits. So the logits the fitted head adds at
serving time are exactly the ones it was fitted and scored with.

One logistic regression per topic label (liblinear), on the articles where that
label is known (unknown labels are left out, as in the topic loss). The
regularisation constant and the weight of the lexical logits against the
encoder's are chosen together on dev section accuracy (ties: topic micro-F1); the
head is kept only if it beats the encoder's topic head alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from serving.decode import sigmoid
from serving.lexical import LexicalHead, window_tfidf
from serving.predictor import Predictor, Prepared
from training.data.topics import TopicExample
from training.evaluate import topic_report, topic_targets

logger = logging.getLogger(__name__)

LEXICAL_FILE = "lexical_head.npz"
C_GRID = (8.0, 32.0)
SCALE_GRID = (0.5, 1.0, 1.5, 2.0, 3.0)


def inverse_document_frequency(prepared: Sequence[Prepared], vocab_size: int) -> np.ndarray:
    """Smoothed idf of every piece id over the documents: ``log((1 + n) / (1 + df)) + 1``."""
    df = np.zeros(vocab_size, dtype=np.float64)
    for item in prepared:
        ids = np.unique(np.asarray(item.encoded.ids, dtype=np.int64))
        df[ids[(ids >= 0) & (ids < vocab_size)]] += 1
    return (np.log((1 + len(prepared)) / (1 + df)) + 1).astype(np.float32)


def document_features(
    idf: np.ndarray, prepared: Sequence[Prepared], first_window_only: bool = False
) -> Any:
    """Sparse ``[documents, vocab]`` features whose dot product is the merged head logits."""
    from scipy import sparse

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for doc, item in enumerate(prepared):
        windows = item.windows[:1] if first_window_only else item.windows
        lengths = np.array([max(w.length, 1) for w in windows], dtype=np.float64)
        for window, weight in zip(windows, lengths / lengths.sum(), strict=True):
            window_ids = item.encoded.ids[window.start : window.end]
            pieces, window_values = window_tfidf(window_ids, idf)
            rows.append(np.full(len(pieces), doc))
            cols.append(pieces)
            values.append(window_values * weight)
    shape = (len(prepared), idf.shape[0])
    if not rows:
        return sparse.csr_matrix(shape, dtype=np.float32)
    # Duplicate (row, col) pairs from overlapping windows are summed by the constructor.
    return sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=shape,
        dtype=np.float32,
    )


def _fit_weights(
    features: Any, targets: np.ndarray, known: np.ndarray, c: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One logistic regression per label on its known rows; labels with one class get zeros."""
    from sklearn.linear_model import LogisticRegression

    n_labels = targets.shape[1]
    weights = np.zeros((features.shape[1], n_labels), dtype=np.float32)
    bias = np.zeros(n_labels, dtype=np.float32)
    for col in range(n_labels):
        rows = known[:, col]
        gold = targets[rows, col] > 0.5
        if gold.all() or not gold.any():
            continue
        model = LogisticRegression(C=c, solver="liblinear", max_iter=1000, random_state=seed)
        model.fit(features[rows], gold)
        weights[:, col] = model.coef_[0]
        bias[col] = model.intercept_[0]
    return weights, bias


def _dev_score(
    logits: np.ndarray, examples: Sequence[TopicExample], labels: list[str], sections: list[str]
) -> tuple[float, float]:
    report = topic_report(sigmoid(logits), examples, labels, sections, {})
    return float(report.get("section_accuracy", 0.0)), float(report["micro_f1"])


def fit_lexical_head(
    predictor: Predictor,
    train: Sequence[TopicExample],
    dev: Sequence[TopicExample],
    sections: list[str],
    seed: int = 13,
    c_grid: Sequence[float] = C_GRID,
    scale_grid: Sequence[float] = SCALE_GRID,
    batch_size: int = 16,
) -> tuple[LexicalHead | None, dict[str, Any]]:
    """Fit on ``train``, choose on ``dev``; ``None`` when no setting beats the encoder alone.

    Returns:
        The head (its weights already scaled) or ``None``, and a report with the dev
        section accuracy and topic micro-F1 of the encoder alone and of every setting.
    """
    if not train or not dev:
        raise ValueError("the lexical topic head needs training and dev articles")
    labels = list(predictor.metadata.topic_labels)
    encoder_only = predictor.with_lexical(None)
    first_only = predictor.metadata.topic_windows == "first"
    vocab_size = int(predictor.tokenizer.get_vocab_size())

    logger.info("lexical head: tokenising %d training articles", len(train))
    train_prepared = encoder_only.prepare([e.text for e in train])
    dev_prepared = encoder_only.prepare([e.text for e in dev])
    idf = inverse_document_frequency(train_prepared, vocab_size)
    train_x = document_features(idf, train_prepared, first_only)
    dev_x = document_features(idf, dev_prepared, first_only)
    targets, known = topic_targets(train, labels)

    logger.info("lexical head: encoder topic logits of %d dev articles", len(dev))
    dev_scores = encoder_only.run_encoder(dev_prepared, batch_size)
    encoder_logits = np.stack([s.topic_logits for s in dev_scores])
    baseline = _dev_score(encoder_logits, dev, labels, sections)
    best: tuple[tuple[float, float], float, float] = (baseline, 0.0, 0.0)
    fitted: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    trials = []
    for c in c_grid:
        weights, bias = _fit_weights(train_x, targets, known, c, seed)
        fitted[c] = (weights, bias)
        lexical_logits = dev_x @ weights + bias
        alone = _dev_score(np.asarray(lexical_logits), dev, labels, sections)
        trials.append({"c": c, "scale": None, "section_accuracy": alone[0], "micro_f1": alone[1]})
        for scale in scale_grid:
            score = _dev_score(encoder_logits + scale * lexical_logits, dev, labels, sections)
            trials.append(
                {"c": c, "scale": scale, "section_accuracy": score[0], "micro_f1": score[1]}
            )
            if score > best[0]:
                best = (score, c, scale)
    (section_accuracy, micro_f1), c, scale = best
    report: dict[str, Any] = {
        "train_articles": len(train),
        "dev_articles": len(dev),
        "encoder_only": {"section_accuracy": baseline[0], "micro_f1": baseline[1]},
        "chosen": {
            "c": c,
            "scale": scale,
            "section_accuracy": section_accuracy,
            "micro_f1": micro_f1,
        },
        "kept": scale > 0,
        "trials": trials,
    }
    logger.info("lexical head: %s", {k: v for k, v in report.items() if k != "trials"})
    if scale == 0:
        return None, report
    weights, bias = fitted[c]
    return LexicalHead(idf, (weights * scale).astype(np.float32), (bias * scale)), report
