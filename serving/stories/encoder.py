"""StoryEncoder: the base e5 sentence embedder (int8 ONNX) that story scoring reads.

One small pass over an article's title and lead, with e5's ``query: `` prefix,
gives a unit vector comparable to the embeddings of a story's examples and
description. The directory (``models/story-encoder`` by default, written by
``python -m training.story_encoder``) is self-describing: ``story_encoder.json``,
``tokenizer.json`` and ``encoder.int8.onnx``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from serving.errors import ModelLoadError
from serving.metadata import DEFAULT_MODEL_DIR, TOKENIZER_NAME
from serving.normalise import NormaliserSettings, normalise
from serving.session import OnnxSession
from serving.tokenise import load_tokenizer, split_words

ENCODER_FILE = "encoder.int8.onnx"
ENCODER_INFO = "story_encoder.json"
OUTPUT_NAME = "embedding"
QUERY_PREFIX = "query: "
DEFAULT_STORY_ENCODER_DIR = DEFAULT_MODEL_DIR.parent / "story-encoder"
STORY_ENCODER_ENV = "KHABAR_STORY_ENCODER"


class StoryEncoderInfo(BaseModel):
    """What serving needs to know about a story encoder directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    query_prefix: str = QUERY_PREFIX
    max_tokens: int = 96
    dimensions: int
    cls_id: int
    sep_id: int
    pad_id: int
    vocab_size: int
    size_mb: float
    sha256: dict[str, str]

    def save(self, directory: Path) -> Path:
        """Write ``story_encoder.json`` into ``directory``."""
        path = directory / ENCODER_INFO
        path.write_text(json.dumps(self.model_dump(), indent=2) + "\n", encoding="utf-8")
        return path


class StoryEncoder:
    """Texts -> unit vectors, truncated to the title and lead (``max_tokens``)."""

    def __init__(self, info: StoryEncoderInfo, tokenizer: object, session: OnnxSession) -> None:
        """Assemble from loaded parts (see :meth:`load`)."""
        self.info = info
        self.tokenizer = tokenizer
        self.session = session
        self._normaliser = NormaliserSettings()
        self._prefix = [
            int(i)
            for i in tokenizer.encode(  # type: ignore[attr-defined]
                info.query_prefix.strip(), add_special_tokens=False
            ).ids
        ]

    @classmethod
    def load(cls, directory: Path, threads: int | None = None) -> StoryEncoder:
        """Load a story encoder directory.

        Raises:
            ModelLoadError: A file is missing or invalid.
        """
        directory = Path(directory)
        path = directory / ENCODER_INFO
        if not path.is_file():
            raise ModelLoadError(
                f"story encoder not found: {path} (build it with python -m training.story_encoder)"
            )
        try:
            info = StoryEncoderInfo.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise ModelLoadError(f"invalid {path}: {str(exc).splitlines()[0]}") from exc
        tokenizer = load_tokenizer(directory / TOKENIZER_NAME)
        session = OnnxSession(directory / ENCODER_FILE, threads=threads)
        return cls(info, tokenizer, session)

    def token_ids(self, text: str) -> list[int]:
        """``<s> query: <first words> </s>``, at most ``max_tokens`` content tokens."""
        words = [w.text for w in split_words(normalise(text, self._normaliser).text)]
        room = self.info.max_tokens - len(self._prefix)
        ids: list[int] = []
        if words:
            encoding = self.tokenizer.encode(  # type: ignore[attr-defined]
                words[: room + 1], is_pretokenized=True, add_special_tokens=False
            )
            ids = [int(i) for i in encoding.ids[:room]]
        return [self.info.cls_id, *self._prefix, *ids, self.info.sep_id]

    def batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Padded ``input_ids`` and ``attention_mask`` for texts."""
        rows = [self.token_ids(text) for text in texts]
        width = max(len(row) for row in rows)
        input_ids = np.full((len(rows), width), self.info.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = row
            mask[index, : len(row)] = 1
        return input_ids, mask

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit vectors, one row per text (``[n, dimensions]``)."""
        if not texts:
            return np.zeros((0, self.info.dimensions), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.info.dimensions), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, mask = self.batch([texts[i] for i in chunk])
            vectors = self.session.run(ids, mask)[OUTPUT_NAME]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            out[chunk] = vectors / np.maximum(norms, 1e-12)
        return out
