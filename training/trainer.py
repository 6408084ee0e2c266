"""Multi-task fine-tuning: entity and topic batches interleaved over one encoder.

A plain PyTorch loop rather than ``transformers.Trainer``: two corpora with
different collators and losses share each optimiser step schedule, and dev
evaluation runs through the serving :class:`Predictor` every epoch.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serving.decode import bio_tags
from serving.metadata import TOKENIZER_NAME, ModelMetadata, SpecialTokens
from serving.predictor import Predictor
from serving.tokenise import load_tokenizer
from training.config import KhabarConfig
from training.data.conll import Sentence
from training.data.corpora import Corpora, load_corpora
from training.evaluate import entity_document_report, topic_probabilities, topic_report
from training.features import (
    IGNORE_INDEX,
    EntityFeature,
    TopicFeature,
    entity_features,
    pack_training_documents,
    sentence_token_counts,
    topic_features,
)
from training.model import KhabarModel, build_encoder
from training.rundir import CHECKPOINT_DIR, library_versions, write_run
from training.torch_session import TorchSession
from training.vocab import corpus_words, trim_model

logger = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed every generator training touches."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Batch:
    """One padded batch of a single task."""

    task: str
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor | None = None


def _pad(rows: list[np.ndarray], value: int) -> np.ndarray:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def make_batches(
    entity: list[EntityFeature],
    topic: list[TopicFeature],
    entity_batch_size: int,
    topic_batch_size: int,
    pad_id: int,
    rng: random.Random,
) -> list[Batch]:
    """Length-bucketed batches of both tasks, shuffled together into one epoch."""
    batches: list[Batch] = []

    def bucketed(items: list[Any], size: int) -> list[list[Any]]:
        order = list(range(len(items)))
        rng.shuffle(order)
        chunks = []
        pool = size * 50
        for start in range(0, len(order), pool):
            group = sorted(order[start : start + pool], key=lambda i: len(items[i].input_ids))
            chunks += [group[i : i + size] for i in range(0, len(group), size)]
        return [[items[i] for i in chunk] for chunk in chunks]

    for chunk in bucketed(entity, entity_batch_size):
        ids = _pad([f.input_ids for f in chunk], pad_id)
        labels = _pad([f.labels for f in chunk], IGNORE_INDEX)
        batches.append(
            Batch(
                "entity",
                torch.from_numpy(ids),
                torch.from_numpy((ids != pad_id).astype(np.int64)),
                torch.from_numpy(labels),
            )
        )
    for chunk in bucketed(topic, topic_batch_size):
        ids = _pad([f.input_ids for f in chunk], pad_id)
        batches.append(
            Batch(
                "topic",
                torch.from_numpy(ids),
                torch.from_numpy((ids != pad_id).astype(np.int64)),
                torch.from_numpy(np.stack([f.targets for f in chunk])),
                torch.from_numpy(np.stack([f.mask for f in chunk])),
            )
        )
    rng.shuffle(batches)
    return batches


def _optimizer(model: KhabarModel, config: KhabarConfig) -> torch.optim.Optimizer:
    settings = config.training
    head_lr = settings.head_learning_rate or settings.learning_rate
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        lr = settings.learning_rate if name.startswith("encoder.") else head_lr
        no_decay = parameter.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        decay = 0.0 if no_decay else settings.weight_decay
        groups.setdefault((lr, decay), []).append(parameter)
    return torch.optim.AdamW(
        [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    )


def draft_metadata(
    config: KhabarConfig, special: SpecialTokens, encoder_info: dict[str, Any]
) -> ModelMetadata:
    """Metadata for a model trained from ``config`` (thresholds are tuned at export)."""
    entities, topics = config.entities, config.topics
    return ModelMetadata(
        name=config.name,
        entity_types=list(entities.types) if entities else [],
        entity_display_names=dict(entities.display_names) if entities else {},
        topic_labels=list(topics.labels) if topics else [],
        topic_display_names=dict(topics.display_names) if topics else {},
        topic_kinds=dict(topics.kinds) if topics else {},
        thresholds={label: 0.5 for label in topics.labels} if topics else {},
        normaliser=config.normaliser,
        max_length=config.windows.serving_length,
        stride=config.windows.serving_overlap,
        window_plan=config.windows.plan,
        decoder=config.decoder,
        special_tokens=special,
        onnx_files={"torch": "-"},
        default_variant="torch",
        base_encoder=encoder_info,
        versions=library_versions(),
    )


def dev_scores(
    model: KhabarModel,
    metadata: ModelMetadata,
    tokenizer: Any,
    corpora: Corpora,
    config: KhabarConfig,
) -> dict[str, Any]:
    """Dev metrics through the serving predictor (same windows and decoding as users get)."""
    predictor = Predictor(metadata, tokenizer, TorchSession(model))
    scores: dict[str, Any] = {}
    if config.entities is not None and corpora.entity_dev:
        scores["entity"] = entity_document_report(
            predictor, corpora.entity_dev, config.entities.document_sentences
        )
    if config.topics is not None and corpora.topic_dev:
        probabilities = topic_probabilities(predictor, corpora.topic_dev)
        scores["topic"] = topic_report(
            probabilities,
            corpora.topic_dev,
            config.topics.labels,
            config.topics.sections,
            metadata.thresholds,
        )
    return scores


def _selection_score(scores: dict[str, Any], entities_only: bool = False) -> float:
    """Mean of document-level entity F1 and section accuracy (entity F1 alone if asked).

    With a detached topic head the encoder is an entity encoder whose topic head is
    refit afterwards, so only the entity figure should pick the checkpoint.
    """
    parts = []
    if "entity" in scores:
        parts.append(scores["entity"]["micro_f1"])
        if entities_only:
            return float(parts[0])
    if "topic" in scores:
        parts.append(scores["topic"].get("section_accuracy", scores["topic"]["micro_f1"]))
    return float(np.mean(parts)) if parts else 0.0


def entity_training_documents(
    config: KhabarConfig, corpora: Corpora, tokenizer: Any
) -> list[Sentence]:
    """The entity training examples: sentences, and (with packing) packed documents.

    Packed copies are drawn with the run's seed, so a run is repeatable.
    """
    assert config.entities is not None
    packing = config.entities.packing
    sentences = list(corpora.entity_train)
    if packing is None or packing.copies == 0:
        return sentences
    rng = random.Random(config.training.seed + 1)
    counts = sentence_token_counts(sentences, tokenizer, config.normaliser)
    documents = sentences if packing.keep_sentences else []
    for _ in range(packing.copies):
        documents = documents + pack_training_documents(
            sentences, counts, rng, packing.min_tokens, config.windows.max_length - 2
        )
    logger.info(
        "entity examples: %d sentences -> %d examples (%d packing copies)",
        len(sentences),
        len(documents),
        packing.copies,
    )
    return documents


def train(config: KhabarConfig, output: Path, show_progress: bool = True) -> Path:
    """Fine-tune the recipe's encoder and save the best dev checkpoint under ``output``.

    Args:
        config: The validated recipe.
        output: Run directory (created); holds ``checkpoint/``, ``tokenizer.json``
            and ``run.json`` with the config, data hashes, history and versions.
        show_progress: Show a progress bar.

    Returns:
        The run directory.
    """
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from training.encoders import resolve_encoder

    settings = config.training
    set_seed(settings.seed)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    output.mkdir(parents=True, exist_ok=True)

    encoder_path = resolve_encoder(config.encoder.name)
    hf_tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    hf_tokenizer.backend_tokenizer.save(str(output / TOKENIZER_NAME))
    tokenizer = load_tokenizer(output / TOKENIZER_NAME)
    special = SpecialTokens(
        cls_id=hf_tokenizer.cls_token_id,
        sep_id=hf_tokenizer.sep_token_id,
        pad_id=hf_tokenizer.pad_token_id,
    )
    encoder_info: dict[str, Any] = {"name": config.encoder.name}
    source_file = Path(encoder_path) / "khabar_source.json"
    if source_file.is_file():
        encoder_info["source"] = json.loads(source_file.read_text(encoding="utf-8"))
    metadata = draft_metadata(config, special, encoder_info)

    # Test texts only widen the vocabulary that is kept; their labels are never read here.
    # Trimming keeps what training and dev text use (plus every Arabic piece); test
    # text is never read here.
    corpora = load_corpora(config, with_test=False)
    tags = bio_tags(config.entities.types) if config.entities else []
    labels = list(config.topics.labels) if config.topics else []
    encoder = build_encoder(encoder_path, attn_implementation="sdpa")
    model = KhabarModel(encoder, len(tags), len(labels), dropout=config.encoder.dropout)
    if settings.trim_vocab:
        # A 250k-row embedding costs optimiser time and memory on every step; the corpus
        # uses a fraction of it, and export would drop the rest anyway.
        vocab = trim_model(
            model, output / TOKENIZER_NAME, corpus_words(corpora.texts(), metadata), output
        )
        vocab.pop("new_to_old")
        tokenizer = load_tokenizer(output / TOKENIZER_NAME)
        encoder_info["vocabulary"] = vocab
        metadata = metadata.model_copy(update={"base_encoder": encoder_info})
        logger.info("vocabulary trimmed: %s", vocab)
    window = config.windows
    entity_feats = (
        entity_features(
            entity_training_documents(config, corpora, tokenizer),
            tokenizer,
            tags,
            special,
            config.normaliser,
            window.max_length,
            window.stride,
        )
        if tags
        else []
    )
    topic_feats = (
        topic_features(
            corpora.topic_train,
            tokenizer,
            labels,
            special,
            config.normaliser,
            window.topic_train_max_length,
        )
        if labels
        else []
    )
    logger.info(
        "features: %d entity windows, %d topic documents", len(entity_feats), len(topic_feats)
    )

    if config.encoder.freeze_embeddings:
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    optimizer = _optimizer(model, config)
    rng = random.Random(settings.seed)
    steps_per_epoch = math.ceil(len(entity_feats) / settings.ner_batch_size) + math.ceil(
        len(topic_feats) / settings.topic_batch_size
    )
    total_steps = max(1, round(settings.epochs * steps_per_epoch))
    warmup = round(settings.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / max(1, warmup))
            * max(0.0, (total_steps - step) / max(1, total_steps - warmup))
        ),
    )
    entity_loss = nn.CrossEntropyLoss(
        ignore_index=IGNORE_INDEX, label_smoothing=settings.label_smoothing
    )
    topic_loss = nn.BCEWithLogitsLoss(reduction="none")

    ema = (
        torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(settings.ema_decay)
        )
        if settings.ema_decay
        else None
    )
    history: list[dict[str, Any]] = []
    best = -1.0
    step = 0
    started = time.time()
    progress = tqdm(total=total_steps, desc="training", disable=not show_progress, unit="step")
    epoch = 0
    while step < total_steps:
        epoch += 1
        model.train()
        running: dict[str, list[float]] = {"entity": [], "topic": []}
        for batch in make_batches(
            entity_feats,
            topic_feats,
            settings.ner_batch_size,
            settings.topic_batch_size,
            special.pad_id,
            rng,
        ):
            if step >= total_steps:
                break
            if batch.task == "entity":
                logits = model(batch.input_ids, batch.attention_mask)["entity_logits"]
                loss = entity_loss(logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1))
            else:
                assert batch.mask is not None
                topic_logits = (
                    model(batch.input_ids, batch.attention_mask)["topic_logits"]
                    if settings.topic_encoder_gradient
                    else model.detached_topic_logits(batch.input_ids, batch.attention_mask)
                )
                raw = topic_loss(topic_logits, batch.labels) * batch.mask
                loss = settings.topic_loss_weight * raw.sum() / batch.mask.sum().clamp(min=1.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            running[batch.task].append(float(loss.detach()))
            progress.update(1)
            if step % 20 == 0:
                progress.set_postfix(
                    {k: f"{np.mean(v[-50:]):.3f}" for k, v in running.items() if v}
                )
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "elapsed_s": round(time.time() - started, 1),
            "train_loss": {k: round(float(np.mean(v)), 4) for k, v in running.items() if v},
        }
        if settings.eval_every_epoch or step >= total_steps:
            # The averaged weights, if kept, compete with the raw ones for the checkpoint.
            candidates: list[tuple[KhabarModel, str, str, bool | str]] = [
                (model, "dev", "selection_score", True)
            ]
            if ema is not None:
                candidates.append((ema.module, "dev_ema", "ema_selection_score", "ema"))
            for candidate, scores_key, score_key, mark in candidates:
                record[scores_key] = dev_scores(candidate, metadata, tokenizer, corpora, config)
                score = _selection_score(
                    record[scores_key], entities_only=not settings.topic_encoder_gradient
                )
                record[score_key] = score
                if score > best:
                    best = score
                    candidate.save(output / CHECKPOINT_DIR)
                    record["saved"] = mark
        logger.info("epoch %d: %s", epoch, json.dumps(record, ensure_ascii=False))
        history.append(record)
        _write_run(output, config, corpora, metadata, history)
    progress.close()
    return output


def _write_run(
    output: Path,
    config: KhabarConfig,
    corpora: Corpora,
    metadata: ModelMetadata,
    history: list[dict[str, Any]],
) -> None:
    run = {
        "config": config.model_dump(mode="json"),
        "data_files": corpora.files,
        "data_counts": corpora.counts(),
        "metadata": metadata.model_dump(mode="json"),
        "history": history,
        "versions": library_versions(),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
    }
    write_run(output, run)
