"""Refit the topic head on frozen features of the whole topic train split.

Fine-tuning the encoder on every article is out of a CPU budget, so the recipe
fine-tunes on a sample; the encoder that comes out of it is then run once,
without gradients, over every training article, and the linear topic head is
refit on those pooled features (masked BCE, as in training). The dev split
decides the number of passes, and whether the refit head replaces the old one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serving.metadata import ModelMetadata
from serving.tokenise import load_tokenizer
from training.config import UNCAPPED_TOPICS, KhabarConfig, validate_config
from training.data.corpora import load_corpora
from training.export import read_run
from training.features import TopicFeature, topic_features
from training.model import KhabarModel
from training.trainer import CHECKPOINT_DIR, RUN_NAME, TOKENIZER_FILE, set_seed

logger = logging.getLogger(__name__)


@torch.inference_mode()
def pooled_features(
    model: KhabarModel,
    features: list[TopicFeature],
    pad_id: int,
    batch_size: int = 64,
    show_progress: bool = True,
) -> torch.Tensor:
    """Mean-pooled encoder outputs ``[n, hidden]`` (the topic head's input), length-sorted."""
    from tqdm.auto import tqdm

    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i].input_ids))
    pooled = torch.zeros(len(features), model.encoder.config.hidden_size)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="features", disable=not show_progress, unit="batch"):
        width = max(len(features[i].input_ids) for i in batch)
        ids = np.full((len(batch), width), pad_id, dtype=np.int64)
        for row, index in enumerate(batch):
            ids[row, : len(features[index].input_ids)] = features[index].input_ids
        input_ids = torch.from_numpy(ids)
        mask = (input_ids != pad_id).long()
        hidden = model.encoder(input_ids=input_ids, attention_mask=mask)[0]
        weights = mask.unsqueeze(-1).float()
        pooled[batch] = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return pooled


def _section_accuracy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, cols: list[int]
) -> float:
    known = (mask[:, cols].sum(1) == len(cols)) & (targets[:, cols].sum(1) == 1)
    if not known.any():
        return 0.0
    predicted = logits[known][:, cols].argmax(1)
    gold = targets[known][:, cols].argmax(1)
    return float((predicted == gold).float().mean() * 100)


def _masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    raw = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (raw * mask).sum() / mask.sum().clamp(min=1.0)


def refit_topic_head(
    run_dir: Path,
    epochs: int = 40,
    learning_rate: float = 3e-3,
    show_progress: bool = True,
    data_root: Path | None = None,
) -> dict[str, Any]:
    """Refit the topic head of a run on all its topic training articles; keep it if dev says so.

    Returns:
        Dev section accuracy and loss before and after, the chosen pass and the sizes.
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
    tokenizer = load_tokenizer(run_dir / TOKENIZER_FILE)
    corpora = load_corpora(config, with_test=False)
    labels = list(config.topics.labels)
    special = metadata.special_tokens

    def tensors(examples):
        feats = topic_features(
            examples,
            tokenizer,
            labels,
            special,
            config.normaliser,
            config.windows.topic_train_max_length,
        )
        x = pooled_features(model, feats, special.pad_id, show_progress=show_progress)
        y = torch.from_numpy(np.stack([f.targets for f in feats]))
        m = torch.from_numpy(np.stack([f.mask for f in feats]))
        return x, y, m

    train_x, train_y, train_m = tensors(corpora.topic_train)
    dev_x, dev_y, dev_m = tensors(corpora.topic_dev)
    cols = [labels.index(s) for s in config.topics.sections]
    head = nn.Linear(train_x.shape[1], len(labels))
    head.load_state_dict(model.topic_head.state_dict())
    with torch.no_grad():
        before = {
            "section_accuracy": _section_accuracy(head(dev_x), dev_y, dev_m, cols),
            "loss": float(_masked_bce(head(dev_x), dev_y, dev_m)),
        }
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=0.01)
    generator = torch.Generator().manual_seed(config.training.seed)
    best = (before["section_accuracy"], -before["loss"], 0, head.state_dict())
    history = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), 256):
            index = order[start : start + 256]
            loss = _masked_bce(head(train_x[index]), train_y[index], train_m[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            logits = head(dev_x)
            accuracy = _section_accuracy(logits, dev_y, dev_m, cols)
            dev_loss = float(_masked_bce(logits, dev_y, dev_m))
        history.append(
            {"pass": epoch, "section_accuracy": round(accuracy, 2), "loss": round(dev_loss, 4)}
        )
        if (accuracy, -dev_loss) > best[:2]:
            best = (
                accuracy,
                -dev_loss,
                epoch,
                {k: v.clone() for k, v in head.state_dict().items()},
            )
    report = {
        "train_articles": len(train_x),
        "dev_articles": len(dev_x),
        "before": before,
        "after": {"section_accuracy": round(best[0], 2), "loss": round(-best[1], 4)},
        "chosen_pass": best[2],
        "replaced": best[2] > 0,
        "history": history,
    }
    if best[2] > 0:
        model.topic_head.load_state_dict(best[3])
        model.save(run_dir / CHECKPOINT_DIR)
    run["topic_refit"] = report
    (run_dir / RUN_NAME).write_text(json.dumps(run, ensure_ascii=False, indent=2), encoding="utf-8")
    logger.info("topic head refit: %s", {k: v for k, v in report.items() if k != "history"})
    return report
