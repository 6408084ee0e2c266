"""The work behind ``khabar train``, ``khabar export``, ``khabar evaluate`` and ``khabar data``.

Plain functions that tests call directly; ``khabar_cli/training_commands.py``
wraps them in typer commands and imports this module only when one is run.
"""

from __future__ import annotations

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
from training.data.corpora import load_corpora
from training.dev_choices import choose_on_dev
from training.evaluate import evaluate_model
from training.staging import staged_directory

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


def run_export(
    run_dir: Path,
    output: Path,
    overrides: list[str],
    threads: int | None = None,
    data_root: Path | None = None,
    force: bool = False,
) -> ModelMetadata:
    """Export a run, make the dev-set choices with the shipped variant, record dev metrics.

    Every file is written into a staging directory beside ``output``, ``khabar.json`` and
    the card once each, and the directory is renamed into place at the end: a failed or
    interrupted export leaves no model directory, and ``force`` replaces an existing one
    only then.

    Raises:
        ConfigError: ``output`` holds files and ``force`` is not set.
    """
    from training.export import build_model_files, trimmed_in_training
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
    notes = card_notes(config)
    draft = ModelMetadata.model_validate(run["metadata"])
    # Trimming reads training and dev text only: a test text must never shape the model.
    corpora = load_corpora(config, with_test=False)
    trim = config.export.trim_vocab and not trimmed_in_training(draft)
    corpus = corpus_words(corpora.texts(), draft) if trim else None
    with staged_directory(output) as staging:
        metadata, _ = build_model_files(run_dir, staging, config.export, corpus)
        metadata = _record_tokens_per_word(staging, metadata, config)
        metadata = choose_on_dev(staging, metadata, config, corpora, threads)
        if not config.export.keep_fp32 and "int8" in metadata.onnx_files:
            # Shipped models carry only int8; the fp32 dev figures stay in the metrics.
            (staging / metadata.onnx_files["fp32"]).unlink()
            files = {k: v for k, v in metadata.onnx_files.items() if k != "fp32"}
            metadata = metadata.model_copy(update={"onnx_files": files})
        training = portable_training_record(metadata.training, config.root)
        metadata = metadata.model_copy(update={"training": training})
        metadata = metadata.with_file_hashes(staging)  # every later load checks the files
        metadata.save(staging)
        write_card(staging, metadata, notes)
    return metadata


def _record_tokens_per_word(
    directory: Path, metadata: ModelMetadata, config: KhabarConfig
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
    model = Tokenizer.from_file(str(directory / TOKENIZER_NAME))
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
    return metadata.model_copy(update={"metrics": {**metadata.metrics, "tokens_per_word": ratio}})


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
    if config.topics is not None:
        # The caps on topic articles are a training budget: a held-out split is scored
        # whole, the dev split as export scores it for its choices, and the baseline
        # learns from every training article.
        config = validate_config(
            config.model_dump(mode="json"),
            str(model_dir),
            list(UNCAPPED_TOPICS),
            config.root,
            config.recipe_dir,
        )
    corpora = load_corpora(config, with_test=split == "test")
    report = evaluate_model(predictor, config, corpora, split)
    if baseline and "topic" in report and config.topics is not None:
        from training.baseline import tfidf_svm_baseline

        held_out = getattr(corpora, f"topic_{split}")
        # The baseline learns from the whole train split (uncapped above), as the topic
        # head does after refit.
        report["topic"]["baseline"] = tfidf_svm_baseline(
            corpora.topic_train, held_out, config.topics.sections
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
