"""Refit the topic head on frozen features of the whole topic train split.

Fine-tuning the encoder on every article is out of a CPU budget, so the recipe
fine-tunes on a sample; the encoder that comes out of it is then run once,
without gradients, over every training article, and the linear topic head is
refit on those pooled features (masked BCE, as in training). The dev split
decides the number of passes, and whether the refit head replaces the old one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serving.errors import ConfigError
from serving.metadata import TOKENIZER_NAME, ModelMetadata
from serving.tokenise import load_tokenizer
from training.config import UNCAPPED_TOPICS, KhabarConfig, validate_config
from training.data.corpora import load_corpora
from training.features import TopicFeature, topic_features
from training.model import KhabarModel, mean_pool
from training.rundir import CHECKPOINT_DIR, RUN_NAME, read_run, write_run
from training.trainer import set_seed

logger = logging.getLogger(__name__)


@torch.inference_mode()
def pooled_features(
    model: KhabarModel,
    features: list[TopicFeature],
    pad_id: int,
    layers: Sequence[int | None] = (None,),
    batch_size: int = 64,
    show_progress: bool = True,
) -> dict[int | None, torch.Tensor]:
    """Mean-pooled encoder states ``[n, hidden]`` of each layer in ``layers`` (None: last).

    One pass over the documents (length-sorted batches) yields every layer asked for.
    """
    from tqdm.auto import tqdm

    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i].input_ids))
    hidden_size = model.encoder.config.hidden_size
    pooled = {layer: torch.zeros(len(features), hidden_size) for layer in layers}
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="features", disable=not show_progress, unit="batch"):
        width = max(len(features[i].input_ids) for i in batch)
        ids = np.full((len(batch), width), pad_id, dtype=np.int64)
        for row, index in enumerate(batch):
            ids[row, : len(features[index].input_ids)] = features[index].input_ids
        input_ids = torch.from_numpy(ids)
        mask = (input_ids != pad_id).long()
        outputs = model.encoder(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        for layer in layers:
            states = outputs[0] if layer is None else outputs.hidden_states[layer]
            pooled[layer][batch] = mean_pool(states, mask)
    return pooled


def section_accuracy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, cols: list[int]
) -> float:
    """Percent of articles with one known section whose best-scoring section is right."""
    known = (mask[:, cols].sum(1) == len(cols)) & (targets[:, cols].sum(1) == 1)
    if not known.any():
        return 0.0
    predicted = logits[known][:, cols].argmax(1)
    gold = targets[known][:, cols].argmax(1)
    return float((predicted == gold).float().mean() * 100)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the labels each article is known for (mask 1)."""
    raw = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (raw * mask).sum() / mask.sum().clamp(min=1.0)


def refit_topic_head(
    run_dir: Path,
    epochs: int = 40,
    learning_rate: float = 3e-3,
    layers: Sequence[int | None] = (None,),
    show_progress: bool = True,
    data_root: Path | None = None,
) -> dict[str, Any]:
    """Refit the topic head of a run on all its topic training articles; keep it if dev says so.

    With several candidate ``layers`` (encoder layer indices, ``None`` for the last), a
    head is fitted on each layer's pooled states and the layer with the best dev section
    accuracy (then loss) is kept, recorded in the checkpoint so export reads the same one.

    Returns:
        Dev section accuracy and loss before and after, the chosen layer and pass, sizes.
    """
    run = read_run(run_dir)
    # Every article of the train and dev splits, not the fine-tuning sample.
    config: KhabarConfig = validate_config(
        run["config"],
        f"{run_dir}/{RUN_NAME}",
        list(UNCAPPED_TOPICS),
        data_root,
    )
    if config.topics is None:
        raise ValueError("this run has no topic head")
    set_seed(config.training.seed)
    metadata = ModelMetadata.model_validate(run["metadata"])
    model = KhabarModel.load(run_dir / CHECKPOINT_DIR)
    assert model.topic_head is not None
    tokenizer = load_tokenizer(run_dir / TOKENIZER_NAME)
    corpora = load_corpora(config, with_test=False)
    labels = list(config.topics.labels)
    special = metadata.special_tokens
    candidates = list(dict.fromkeys([model.topic_layer, *layers]))
    depth = model.encoder.config.num_hidden_layers
    for layer in candidates:
        if layer is not None and not 1 <= layer <= depth:
            raise ConfigError(f"topic layer {layer} is not one of the encoder's 1..{depth}")

    def tensors(examples):
        feats = topic_features(
            examples,
            tokenizer,
            labels,
            special,
            config.normaliser,
            config.windows.topic_train_max_length,
        )
        x = pooled_features(model, feats, special.pad_id, candidates, show_progress=show_progress)
        y = torch.from_numpy(np.stack([f.targets for f in feats]))
        m = torch.from_numpy(np.stack([f.mask for f in feats]))
        return x, y, m

    train_x, train_y, train_m = tensors(corpora.topic_train)
    dev_x, dev_y, dev_m = tensors(corpora.topic_dev)
    cols = [labels.index(s) for s in config.topics.sections]
    current = model.topic_layer
    with torch.no_grad():
        logits = model.topic_head(dev_x[current])
        before = {
            "layer": current,
            "section_accuracy": section_accuracy(logits, dev_y, dev_m, cols),
            "loss": float(masked_bce(logits, dev_y, dev_m)),
        }
    best = (before["section_accuracy"], -before["loss"], current, 0, model.topic_head.state_dict())
    history = []
    for layer in candidates:
        head = nn.Linear(train_x[layer].shape[1], len(labels))
        head.load_state_dict(model.topic_head.state_dict())
        optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=0.01)
        generator = torch.Generator().manual_seed(config.training.seed)
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(train_x[layer]), generator=generator)
            for start in range(0, len(order), 256):
                index = order[start : start + 256]
                loss = masked_bce(head(train_x[layer][index]), train_y[index], train_m[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                logits = head(dev_x[layer])
                accuracy = section_accuracy(logits, dev_y, dev_m, cols)
                dev_loss = float(masked_bce(logits, dev_y, dev_m))
            history.append(
                {
                    "layer": layer,
                    "pass": epoch,
                    "section_accuracy": round(accuracy, 2),
                    "loss": round(dev_loss, 4),
                }
            )
            if (accuracy, -dev_loss) > best[:2]:
                state = {k: v.clone() for k, v in head.state_dict().items()}
                best = (accuracy, -dev_loss, layer, epoch, state)
    report = {
        "train_articles": len(train_y),
        "dev_articles": len(dev_y),
        "before": before,
        "after": {"section_accuracy": round(best[0], 2), "loss": round(-best[1], 4)},
        "candidate_layers": candidates,
        "chosen_layer": best[2],
        "chosen_pass": best[3],
        "replaced": best[3] > 0,
        "history": history,
    }
    if best[3] > 0:
        model.topic_head.load_state_dict(best[4])
        model.topic_layer = best[2]
        model.save(run_dir / CHECKPOINT_DIR)
    run["topic_refit"] = report
    write_run(run_dir, run)
    logger.info("topic head refit: %s", {k: v for k, v in report.items() if k != "history"})
    return report
