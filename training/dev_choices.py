"""The choices ``khabar export`` makes on the dev split, on predictors held in memory.

With the default ONNX variant: whether to keep a lexical topic head, the topic pooling
over windows, the per-label thresholds and the BIO decoder. Then every variant is
scored on dev with those choices. Each variant's ONNX session is opened once; a choice
is a metadata change on the same loaded predictor (:meth:`Predictor.with_metadata`),
never a reload from disk. The caller writes ``khabar.json`` once, from the metadata
returned here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from serving.lexical import LexicalHead
from serving.metadata import TOKENIZER_NAME, ModelMetadata
from serving.predictor import Predictor
from serving.session import OnnxSession
from serving.tokenise import load_tokenizer
from training.config import KhabarConfig
from training.data.corpora import Corpora
from training.evaluate import (
    entity_document_report,
    evaluate_model,
    topic_probabilities,
    topic_report,
    tune_thresholds,
)

logger = logging.getLogger(__name__)


def choose_on_dev(
    directory: Path,
    metadata: ModelMetadata,
    config: KhabarConfig,
    corpora: Corpora,
    threads: int | None = None,
) -> ModelMetadata:
    """Make every dev-set choice for the model in ``directory`` and record dev figures.

    Args:
        directory: The model's files (a staging directory): tokenizer and ONNX graphs. A
            lexical topic head, when kept, is written here.
        metadata: The model's metadata as export built it (its ``khabar.json`` is not read).
        config: The recipe.
        corpora: Its train and dev splits.
        threads: onnxruntime intra-op threads.

    Returns:
        The metadata with the choices and ``metrics["dev"]`` per variant.
    """
    tokenizer = load_tokenizer(directory / TOKENIZER_NAME)

    def session_of(variant: str) -> OnnxSession:
        return OnnxSession(directory / metadata.onnx_files[variant], threads=threads)

    default = Predictor(metadata, tokenizer, session_of(metadata.default_variant), directory)
    if config.topics is not None and config.topics.lexical_head and corpora.topic_dev:
        default = add_lexical_head(directory, default, config, corpora)
    default = _tune(default, config, corpora)
    dev: dict[str, Any] = dict(default.metadata.metrics.get("dev", {}))
    variants = sorted(metadata.onnx_files, key=lambda v: v != metadata.default_variant)
    for variant in variants:
        predictor = default
        if variant != metadata.default_variant:  # the same choices, the other graph
            predictor = Predictor(
                default.metadata, tokenizer, session_of(variant), directory, default.lexical
            )
        dev[variant] = evaluate_model(predictor, config, corpora, "dev")
        logger.info("dev (%s): %s", variant, json.dumps(_headline(dev[variant])))
    return default.metadata.model_copy(update={"metrics": {**default.metadata.metrics, "dev": dev}})


def add_lexical_head(
    directory: Path, predictor: Predictor, config: KhabarConfig, corpora: Corpora
) -> Predictor:
    """Fit the lexical topic head; keep it (written to ``directory``) only if dev improves.

    Returns:
        The same loaded predictor with the head (if kept) and its metadata updated.
    """
    from training.lexical import LEXICAL_FILE, fit_lexical_head

    assert config.topics is not None
    head, report = fit_lexical_head(
        predictor.with_lexical(None),
        corpora.topic_train,
        corpora.topic_dev,
        config.topics.sections,
        seed=config.training.seed,
    )
    if head is not None:
        head.save(directory / LEXICAL_FILE)
        # As serving will read it back: every array float32.
        arrays = (head.idf, head.weights, head.bias)
        head = LexicalHead(*(np.asarray(a, dtype=np.float32) for a in arrays))
    metadata = predictor.metadata.model_copy(
        update={
            "lexical_head": LEXICAL_FILE if head is not None else None,
            "training": {**predictor.metadata.training, "lexical_head": report},
        }
    )
    return predictor.with_metadata(metadata).with_lexical(head)


def _tune(predictor: Predictor, config: KhabarConfig, corpora: Corpora) -> Predictor:
    """Topic pooling and thresholds, then the BIO decoder, each chosen on dev."""
    metadata = predictor.metadata
    if metadata.topic_labels and corpora.topic_dev:
        predictor = _choose_topic_windows(predictor, corpora, config)
        probabilities = topic_probabilities(predictor, corpora.topic_dev)
        thresholds = tune_thresholds(probabilities, corpora.topic_dev, metadata.topic_labels)
        predictor = predictor.with_metadata(thresholds=thresholds)
    if metadata.entity_types and corpora.entity_dev:
        sizes = config.entities.document_sentences if config.entities else [1]
        predictor = _choose_decoder(predictor, corpora, sizes)
    return predictor


def _choose_topic_windows(
    predictor: Predictor, corpora: Corpora, config: KhabarConfig
) -> Predictor:
    """Keep the topic window pooling (mean or first) with the better dev section accuracy.

    Ties go to topic micro-F1, then to the length-weighted mean.
    """
    assert config.topics is not None
    metadata = predictor.metadata
    scores = {}
    for pooling in ("mean", "first"):
        candidate = predictor.with_metadata(topic_windows=pooling)
        probabilities = topic_probabilities(candidate, corpora.topic_dev)
        report = topic_report(
            probabilities,
            corpora.topic_dev,
            metadata.topic_labels,
            config.topics.sections,
            metadata.thresholds,
        )
        scores[pooling] = (report.get("section_accuracy", 0.0), report["micro_f1"])
    best = max(scores, key=lambda name: (scores[name], name == "mean"))
    logger.info("dev (section accuracy, micro-F1) by topic pooling: %s -> %s", scores, best)
    metrics = {**metadata.metrics, "dev_topic_windows": scores}
    return predictor.with_metadata(topic_windows=best, metrics=metrics)


def _choose_decoder(predictor: Predictor, corpora: Corpora, sizes: list[int]) -> Predictor:
    """Keep the BIO decoder (constrained Viterbi or argmax) with the better dev entity F1.

    The F1 is the document-level one (``entities.document_sentences``' largest size).
    """
    scores = {}
    for decoder in ("viterbi", "argmax"):
        candidate = predictor.with_metadata(decoder=decoder)
        report = entity_document_report(candidate, corpora.entity_dev, [max(sizes)])
        scores[decoder] = report["micro_f1"]
    best = max(scores, key=lambda name: (scores[name], name == "viterbi"))
    logger.info("dev entity F1 by decoder: %s -> %s", scores, best)
    metrics = {**predictor.metadata.metrics, "dev_decoder_f1": scores}
    return predictor.with_metadata(decoder=best, metrics=metrics)


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "entity" in report:
        out["entity_micro_f1"] = report["entity"]["micro_f1"]
    if "topic" in report:
        out["topic_micro_f1"] = report["topic"]["micro_f1"]
        out["section_accuracy"] = report["topic"].get("section_accuracy")
    return out
