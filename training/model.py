"""KhabarModel: one pretrained encoder, a BIO entity head and a multi-label topic head.

One encoder pass serves both heads. A model may carry either head or both, so a
topic-only or entity-only model is the same class with one head left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

HEADS_NAME = "khabar_heads.json"
WEIGHTS_NAME = "model.safetensors"


def build_encoder(name_or_path: str, attn_implementation: str = "sdpa") -> nn.Module:
    """Load a pretrained BERT-family encoder without its pooler (khabar pools itself)."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(
            name_or_path, attn_implementation=attn_implementation, add_pooling_layer=False
        )
    except TypeError:  # encoder families whose constructor has no pooler flag
        return AutoModel.from_pretrained(name_or_path, attn_implementation=attn_implementation)


def encoder_from_config(config: Any, attn_implementation: str = "sdpa") -> nn.Module:
    """An encoder with random weights from a config (checkpoints fill them in)."""
    from transformers import AutoModel

    try:
        return AutoModel.from_config(
            config, attn_implementation=attn_implementation, add_pooling_layer=False
        )
    except TypeError:
        return AutoModel.from_config(config, attn_implementation=attn_implementation)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: the encoder (e5) was pretrained with this pooling."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class KhabarModel(nn.Module):
    """Shared encoder with an entity head (per token) and a topic head (mean-pooled)."""

    def __init__(
        self,
        encoder: nn.Module,
        n_tags: int,
        n_topics: int,
        dropout: float = 0.1,
        topic_layer: int | None = None,
    ):
        """Attach heads of the given sizes (0 leaves a head out) to ``encoder``.

        ``topic_layer`` picks the encoder layer the topic head pools (``None``: the last).
        An encoder fine-tuned for entities keeps more of its pretrained, topic-friendly
        representation in its middle layers; reading one of them costs nothing, since
        the entity head needs the whole stack anyway.
        """
        super().__init__()
        if n_tags == 0 and n_topics == 0:
            raise ValueError("KhabarModel needs at least one head")
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.n_tags = n_tags
        self.n_topics = n_topics
        self.dropout = nn.Dropout(dropout)
        self.entity_head = nn.Linear(hidden, n_tags) if n_tags else None
        self.topic_head = nn.Linear(hidden, n_topics) if n_topics else None
        self.topic_layer = topic_layer

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Entity logits ``[B, T, n_tags]`` and topic logits ``[B, n_topics]``."""
        hidden, topic_hidden = self.encode(input_ids, attention_mask)
        outputs: dict[str, torch.Tensor] = {}
        if self.entity_head is not None:
            outputs["entity_logits"] = self.entity_head(self.dropout(hidden))
        if self.topic_head is not None:
            pooled = mean_pool(topic_hidden, attention_mask)
            outputs["topic_logits"] = self.topic_head(self.dropout(pooled))
        return outputs

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The last layer's states (entities) and the topic layer's states (topics)."""
        if self.topic_layer is None:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
            return hidden, hidden
        outputs = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        return outputs[0], outputs.hidden_states[self.topic_layer]

    def detached_topic_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Topic logits whose loss trains the topic head only, never the encoder.

        The encoder runs without gradients (and without their cost), so the topic task
        cannot pull the shared representation away from what the entity head reads.
        """
        assert self.topic_head is not None
        with torch.no_grad():
            pooled = mean_pool(self.encode(input_ids, attention_mask)[1], attention_mask)
        return self.topic_head(self.dropout(pooled))

    def save(self, directory: Path) -> None:
        """Save encoder config, head sizes and all weights into ``directory``."""
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.config.save_pretrained(directory)
        heads = {
            "n_tags": self.n_tags,
            "n_topics": self.n_topics,
            "dropout": self.dropout.p,
            "topic_layer": self.topic_layer,
        }
        (directory / HEADS_NAME).write_text(json.dumps(heads), encoding="utf-8")
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME))

    @classmethod
    def load(cls, directory: Path, attn_implementation: str = "sdpa") -> KhabarModel:
        """Rebuild a saved model; ``eager`` attention is what ONNX export fuses best."""
        from safetensors.torch import load_file
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(directory)
        heads = json.loads((directory / HEADS_NAME).read_text(encoding="utf-8"))
        model = cls(encoder_from_config(config, attn_implementation), **heads)
        model.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
        model.eval()
        return model
