"""The work behind ``khabar train``, ``khabar export``, ``khabar evaluate`` and ``khabar data``.

Plain functions that tests call directly; ``khabar_cli/training_commands.py``
wraps them in typer commands and imports this module only when one is run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from serving.errors import ConfigError
from serving.metadata import TOKENIZER_NAME, ModelMetadata
from serving.predictor import Predictor
from training.card import card_notes, write_card
from training.config import (
    UNCAPPED_TOPICS,
    KhabarConfig,
    config_of_model,
    load_config,
    portable_training_record,
    validate_config,
)
from training.data.corpora import Corpora, load_corpora
from training.data.entity_spans import read_span_documents
from training.evaluate import (
    entity_document_report,
    span_report,
    topic_probabilities,
    topic_report,
    tune_thresholds,
)

logger = logging.getLogger(__name__)


def run_train(
    config_path: Path,
    output: Path,
    overrides: list[str],
    progress: bool = True,
    data_root: Path | None = None,
) -> Path:
    """Train the recipe at ``config_path`` into the run directory ``output``."""
    from training.trainer import train

    config = load_config(config_path, overrides, data_root)
    return train(config, output, show_progress=progress)


def evaluate_model(
    predictor: Predictor, config: KhabarConfig, corpora: Corpora, split: str
) -> dict[str, Any]:
    """Entity and topic reports of one split, through ``predictor``."""
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


def run_export(
    run_dir: Path,
    output: Path,
    overrides: list[str],
    threads: int | None = None,
    data_root: Path | None = None,
    force: bool = False,
) -> ModelMetadata:
    """Export a run, tune topic thresholds on dev with the shipped variant, record dev metrics.

    Raises:
        ConfigError: ``output`` holds files and ``force`` is not set.
    """
    from training.export import export_run
    from training.rundir import read_run
    from training.vocab import corpus_words

    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not force:
        raise ConfigError(f"{output} is not empty: choose another --output or pass --force")
    run = read_run(run_dir)
    # The caps on topic articles are a training budget; export fits and tunes on everything.
    uncapped = list(UNCAPPED_TOPICS) if run["config"].get("topics") else []
    config = validate_config(
        run["config"], f"{run_dir}/run.json", [*uncapped, *overrides], data_root
    )
    draft = ModelMetadata.model_validate(run["metadata"])
    # Trimming reads training and dev text only: a test text must never shape the model.
    corpora = load_corpora(config, with_test=False)
    corpus = corpus_words(corpora.texts(), draft) if config.export.trim_vocab else None
    metadata, _ = export_run(run_dir, output, config.export, corpus)
    metadata = _record_tokens_per_word(output, metadata, config)
    metadata = metadata.with_file_hashes(output)  # every later load checks the files
    metadata.save(output)
    if config.topics is not None and config.topics.lexical_head and corpora.topic_dev:
        metadata = add_lexical_head(output, metadata, config, corpora, threads)

    variants = sorted(metadata.onnx_files, key=lambda v: v != metadata.default_variant)
    metadata = tune_on_dev(output, metadata, config, corpora, variants, threads)
    if not config.export.keep_fp32 and "int8" in metadata.onnx_files:
        # Shipped models carry only int8; the fp32 dev figures stay in the metrics.
        (output / metadata.onnx_files["fp32"]).unlink()
        files = {k: v for k, v in metadata.onnx_files.items() if k != "fp32"}
        metadata = metadata.model_copy(update={"onnx_files": files})
    training = portable_training_record(metadata.training, config.root)
    metadata = metadata.model_copy(update={"training": training}).with_file_hashes(output)
    metadata.save(output)
    write_card(output, metadata, card_notes(config))
    return metadata


def _record_tokens_per_word(
    output: Path, metadata: ModelMetadata, config: KhabarConfig
) -> ModelMetadata:
    """Tokens per word on FIGNEWS 2024 (post-2020 text) with the model's and the base tokenizer."""
    from tokenizers import Tokenizer

    from training.data.topics import read_jsonl
    from training.encoders import resolve_encoder
    from training.vocab import corpus_words, is_arabic_script, tokens_per_word

    name = config.entities.fignews_texts if config.entities else None
    name = name or (config.topics.fignews if config.topics else None)
    texts_path = config.root / name if name is not None else None
    base = Path(resolve_encoder(config.encoder.name)) / TOKENIZER_NAME
    if texts_path is None or not texts_path.is_file() or not base.is_file():
        return metadata
    words = corpus_words([str(r["text"]) for _, r in read_jsonl(texts_path, ("text",))], metadata)
    model = Tokenizer.from_file(str(output / TOKENIZER_NAME))
    original = Tokenizer.from_file(str(base))
    arabic = [[w for w in doc if is_arabic_script(w)] for doc in words]
    model_ratio, n_words = tokens_per_word(model, words)
    base_ratio, _ = tokens_per_word(original, words)
    model_arabic, n_arabic = tokens_per_word(model, arabic)
    base_arabic, _ = tokens_per_word(original, arabic)
    ratio = {
        "model": round(model_ratio, 4),
        "base": round(base_ratio, 4),
        "words": n_words,
        "arabic_model": round(model_arabic, 4),
        "arabic_base": round(base_arabic, 4),
        "arabic_words": n_arabic,
    }
    logger.info("tokens per word on FIGNEWS: %s", ratio)
    metadata = metadata.model_copy(
        update={"metrics": {**metadata.metrics, "tokens_per_word": ratio}}
    )
    metadata.save(output)
    return metadata


def add_lexical_head(
    output: Path,
    metadata: ModelMetadata,
    config: KhabarConfig,
    corpora: Corpora,
    threads: int | None = None,
) -> ModelMetadata:
    """Fit the lexical topic head beside an exported model; keep it only if dev improves."""
    from training.lexical import LEXICAL_FILE, fit_lexical_head

    assert config.topics is not None
    predictor = Predictor.load(output, threads=threads).with_lexical(None)
    head, report = fit_lexical_head(
        predictor,
        corpora.topic_train,
        corpora.topic_dev,
        config.topics.sections,
        seed=config.training.seed,
    )
    (output / LEXICAL_FILE).unlink(missing_ok=True)
    if head is not None:
        head.save(output / LEXICAL_FILE)
    metadata = metadata.model_copy(
        update={
            "lexical_head": LEXICAL_FILE if head is not None else None,
            "training": {**metadata.training, "lexical_head": report},
        }
    ).with_file_hashes(output)
    metadata.save(output)
    return metadata


def tune_on_dev(
    output: Path,
    metadata: ModelMetadata,
    config: KhabarConfig,
    corpora: Corpora,
    variants: list[str],
    threads: int | None = None,
) -> ModelMetadata:
    """Make the dev-set choices with the default variant and record dev figures per variant.

    With the default variant: topic pooling over windows, per-label thresholds and the
    BIO decoder. Then every variant in ``variants`` is scored on dev; figures of other
    variants already recorded are kept.
    """
    dev: dict[str, Any] = dict(metadata.metrics.get("dev", {}))
    for variant in variants:
        predictor = Predictor.load(output, threads=threads, variant=variant)
        if variant == metadata.default_variant and metadata.topic_labels and corpora.topic_dev:
            metadata = _choose_topic_windows(predictor, metadata, corpora, config)
            probabilities = topic_probabilities(
                predictor.with_metadata(metadata), corpora.topic_dev
            )
            thresholds = tune_thresholds(probabilities, corpora.topic_dev, metadata.topic_labels)
            metadata = metadata.model_copy(update={"thresholds": thresholds})
        if variant == metadata.default_variant and metadata.entity_types and corpora.entity_dev:
            sizes = config.entities.document_sentences if config.entities else [1]
            metadata = _choose_decoder(predictor, metadata, corpora, sizes)
        metadata.save(output)
        predictor = predictor.with_metadata(metadata)
        dev[variant] = evaluate_model(predictor, config, corpora, "dev")
        logger.info("dev (%s): %s", variant, json.dumps(_headline(dev[variant])))
    metadata = metadata.model_copy(update={"metrics": {**metadata.metrics, "dev": dev}})
    metadata.save(output)
    return metadata


def _choose_topic_windows(
    predictor: Predictor, metadata: ModelMetadata, corpora: Corpora, config: KhabarConfig
) -> ModelMetadata:
    """Keep the topic window pooling (mean or first) with the better dev section accuracy.

    Ties go to topic micro-F1, then to the length-weighted mean.
    """
    assert config.topics is not None
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
    return metadata.model_copy(update={"topic_windows": best, "metrics": metrics})


def _choose_decoder(
    predictor: Predictor, metadata: ModelMetadata, corpora: Corpora, sizes: list[int]
) -> ModelMetadata:
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
    metrics = {**metadata.metrics, "dev_decoder_f1": scores}
    return metadata.model_copy(update={"decoder": best, "metrics": metrics})


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "entity" in report:
        out["entity_micro_f1"] = report["entity"]["micro_f1"]
    if "topic" in report:
        out["topic_micro_f1"] = report["topic"]["micro_f1"]
        out["section_accuracy"] = report["topic"].get("section_accuracy")
    return out


def run_evaluate(
    model_dir: Path,
    config_path: Path | None,
    overrides: list[str],
    split: str = "test",
    variant: str | None = None,
    record: bool = False,
    baseline: bool = False,
    threads: int | None = None,
    data_root: Path | None = None,
) -> dict[str, Any]:
    """Evaluate an exported model on a split; optionally record it in metadata and card."""
    if split not in ("dev", "test"):
        raise ConfigError(f"split must be 'dev' or 'test', not {split!r}")
    predictor = Predictor.load(model_dir, threads=threads, variant=variant)
    metadata = predictor.metadata
    config = config_of_model(metadata.training, str(model_dir), config_path, overrides, data_root)
    corpora = load_corpora(config, with_test=split == "test")
    report = evaluate_model(predictor, config, corpora, split)
    if baseline and "topic" in report and config.topics is not None:
        from training.baseline import tfidf_svm_baseline

        held_out = getattr(corpora, f"topic_{split}")
        # The baseline learns from the whole train split, as the topic head does after refit.
        full = load_corpora(
            validate_config(
                config.model_dump(mode="json"),
                "baseline",
                ["topics.max_train_examples=null", "entities=null"],
                config.root,
                config.recipe_dir,
            ),
            with_test=False,
        )
        report["topic"]["baseline"] = tfidf_svm_baseline(
            full.topic_train, held_out, config.topics.sections
        )
    chosen = variant or metadata.default_variant
    if record:
        metrics = dict(metadata.metrics)
        metrics.setdefault(split, {})
        metrics[split] = {**metrics[split], chosen: report}
        # The held-out files behind these figures join the record; training's entries stay.
        files = {**corpora.files, **metadata.training.get("data_files", {})}
        training = {**metadata.training, "data_files": files} if metadata.training else {}
        metadata = metadata.model_copy(update={"metrics": metrics, "training": training})
        metadata.save(model_dir)
        write_card(model_dir, metadata, card_notes(config))
    return report


def run_data_check(
    config_path: Path | None, model_dir: Path, data_root: Path | None = None
) -> tuple[str, bool]:
    """Check the corpora of a recipe against the sums the model records.

    Args:
        config_path: The recipe; default ``configs/default.yaml`` in a checkout, else
            the recipe recorded in the model.
        model_dir: The model whose recorded data sums are expected (the shipped one).
        data_root: The ``--data`` flag.

    Returns:
        The report and whether every file is there and matches.
    """
    from training.config import RECIPES_DIR, portable_data_files
    from training.data.check import check_data, complete, render

    metadata = ModelMetadata.load(model_dir)
    default_recipe = RECIPES_DIR / "default.yaml"
    if config_path is None and default_recipe.is_file():
        config_path = default_recipe
    config = config_of_model(metadata.training, str(model_dir), config_path, [], data_root)
    recorded = metadata.training.get("data_files", {})
    checked = check_data(config, portable_data_files(recorded, config.root))
    return render(checked, config), complete(checked)
