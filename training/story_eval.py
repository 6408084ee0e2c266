"""Story figures and calibration on the project's story set.

``collect`` runs the model (entities for the evidence; the trained story heads for
comparison), the keyword rules of ``configs/stories.yaml`` and the definition scorer's
evidence over labelled texts. ``fit_combiner`` fits a definition's logistic weights on
dev and picks the threshold from cross-validated dev probabilities (so it is not tuned
on the very predictions it judges); ``report`` gives P/R/F1 of all three in one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.predictor import DocumentResult, Predictor
from serving.stories.schema import FEATURES, Combiner
from serving.stories.scorer import StoryScorer, passes_gate
from training.data.story_rules import load_story_rules
from training.story_set import StoryItem

RULES_PATH = Path(__file__).resolve().parents[1] / "configs" / "stories.yaml"


@dataclass(frozen=True)
class Collected:
    """Everything measured on a list of labelled texts."""

    labels: dict[str, np.ndarray]
    evidence: np.ndarray  # [n, n_stories, n_features]
    head: dict[str, np.ndarray]  # trained head probabilities, per story the model has
    head_thresholds: dict[str, float]
    rules: dict[str, np.ndarray]


def collect(
    items: Sequence[StoryItem],
    predictor: Predictor,
    scorer: StoryScorer,
    results: Sequence[DocumentResult] | None = None,
) -> Collected:
    """Model outputs, rule labels and story evidence for ``items``.

    ``results``: the model's results on ``items`` when already computed (without stories).
    """
    texts = [item.text for item in items]
    if results is None:
        results = predictor.analyze(texts)
    evidence = scorer.evidence(texts, **predictor.story_inputs(results))
    rules = load_story_rules(RULES_PATH)
    rule_labels = [rules.apply(item.text, item.section) for item in items]
    head = {
        label: np.array([r.topic_scores.get(label, 0.0) for r in results])
        for label in scorer.labels
        if label in predictor.metadata.topic_labels
    }
    return Collected(
        labels={
            label: np.array([item.labels.get(label, 0) for item in items])
            for label in scorer.labels
        },
        evidence=evidence,
        head=head,
        head_thresholds={label: predictor.metadata.thresholds.get(label, 0.5) for label in head},
        rules={
            label: np.array([1 if r.get(label) == 1.0 else 0 for r in rule_labels])
            for label in rules.labels
        },
    )


def prf(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 in percent, with the counts behind them."""
    tp = int(((predicted == 1) & (gold == 1)).sum())
    fp = int(((predicted == 1) & (gold == 0)).sum())
    fn = int(((predicted == 0) & (gold == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(100 * precision, 1),
        "recall": round(100 * recall, 1),
        "f1": round(100 * f1, 1),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def best_threshold(probabilities: np.ndarray, gold: np.ndarray) -> float:
    """The threshold of highest F1 on a grid (ties: the middle of the best run)."""
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    scores = [prf((probabilities >= t).astype(int), gold)["f1"] for t in grid]
    best = max(scores)
    winners = [t for t, s in zip(grid, scores, strict=True) if s == best]
    return float(winners[len(winners) // 2])


def fit_combiner(
    evidence: np.ndarray,
    gold: np.ndarray,
    c: float = 1.0,
    calibrated_on: str | None = "dev",
    exclude: Sequence[str] = (),
) -> Combiner:
    """Logistic weights on one story's evidence ``[n, n_features]``; threshold from 5-fold CV.

    Features in ``exclude`` get weight 0 (they are left out of the fit). Only texts that
    pass the anchor gate are fitted: the others score 0 whatever the weights say
    (``StoryScorer.probabilities``).
    """
    gate = passes_gate(evidence)
    evidence, gold = evidence[gate], gold[gate]
    keep = [i for i, name in enumerate(FEATURES) if name not in exclude]
    evidence = evidence[:, keep]
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Standardised so that the penalty treats a cosine (spread 0.05) like a term count.
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    )
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    cv = cross_val_predict(model, evidence, gold, cv=folds, method="predict_proba")[:, 1]
    model.fit(evidence, gold)
    scaler, logistic = model[0], model[1]
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    kept = logistic.coef_[0] / scale
    bias = float(logistic.intercept_[0] - (kept * scaler.mean_).sum())
    weights = np.zeros(len(FEATURES))
    weights[keep] = kept
    return Combiner(
        bias=round(bias, 4),
        weights={f: round(float(w), 4) for f, w in zip(FEATURES, weights, strict=True)},
        threshold=best_threshold(cv, gold),
        calibrated_on=calibrated_on,
    )


def fit_default_combiner(collected: Collected, c: float = 0.1) -> Combiner:
    """One combiner for stories without labelled data: both stories' dev evidence pooled.

    The trained-head feature is left out (a new story has no head), so the weights say
    how much a cosine or an anchor is worth for any story; ``DEFAULT_COMBINER`` in
    ``serving/stories/scorer.py`` holds the values this returns.
    """
    n_stories = collected.evidence.shape[1]
    labels = list(collected.labels)
    evidence = np.concatenate([collected.evidence[:, s, :] for s in range(n_stories)])
    gold = np.concatenate([collected.labels[labels[s]] for s in range(n_stories)])
    return fit_combiner(evidence, gold, c=c, calibrated_on=None, exclude=("model_head",))


def head_is_useful(collected: Collected, label: str, minimum_f1: float = 50.0) -> bool:
    """Whether the model's trained head of ``label`` is worth a weight (dev F1 ≥ ``minimum_f1``).

    A weak head (the shipped ``russia_ukraine``: F1 0 on dev) says almost nothing on dev,
    so any weight fitted to it is noise that a retrained model would turn into errors.
    """
    if label not in collected.head:
        return False
    predicted = (collected.head[label] >= collected.head_thresholds[label]).astype(int)
    return prf(predicted, collected.labels[label])["f1"] >= minimum_f1


def report(collected: Collected, scorer: StoryScorer) -> dict[str, Any]:
    """P/R/F1 per story for the definition scorer, the keyword rules and the trained head."""
    probabilities = scorer.probabilities(collected.evidence)
    thresholds = scorer.thresholds()
    out: dict[str, Any] = {}
    for s, label in enumerate(scorer.labels):
        gold = collected.labels[label]
        row: dict[str, Any] = {"positives": int(gold.sum()), "texts": int(gold.shape[0])}
        row["definition"] = prf((probabilities[:, s] >= thresholds[label]).astype(int), gold)
        if label in collected.rules:
            row["keyword_rules"] = prf(collected.rules[label], gold)
        if label in collected.head:
            row["trained_head"] = prf(
                (collected.head[label] >= collected.head_thresholds[label]).astype(int), gold
            )
        out[label] = row
    return out
