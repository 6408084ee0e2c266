"""ModelMetadata: everything inference needs to know about a model directory.

A model directory is self-describing: the ONNX graph(s), ``tokenizer.json``,
this metadata file and a model card. Serving reads only this file, never the
training YAML, so a model keeps working when configs change. The metadata records
the sha256 of every file the runtime loads, and loading checks them, so a corrupt
or truncated download is refused with the file's name instead of answering wrongly.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serving.decode import bio_tags
from serving.errors import ModelLoadError
from serving.normalise import NormaliserSettings

METADATA_NAME = "khabar.json"
TOKENIZER_NAME = "tokenizer.json"
CARD_NAME = "MODEL_CARD.md"
FORMAT_VERSION = 1
MODEL_ENV = "KHABAR_MODEL"


def default_model_dir() -> Path:
    """The shipped model, as package data of ``serving``: ``serving/models/default``.

    In a checkout ``serving/models`` is a link to the repository's top-level ``models/``;
    a wheel holds the files themselves (see ``pyproject.toml``). Both are found here, the
    same way. ``--model`` and ``KHABAR_MODEL`` take precedence where a model is chosen.
    """
    return Path(str(resources.files("serving").joinpath("models", "default")))


DEFAULT_MODEL_DIR = default_model_dir()


def sha256_of_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


Decoder = Literal["viterbi", "argmax"]
"""How the entity head's BIO tags are decoded (``serving.decode.decode_tags``)."""
TopicKind = Literal["section", "region", "story"]
"""What a topic label is: a site section, a region or a story."""


class SpecialTokens(BaseModel):
    """Ids the runtime adds around each window and uses for padding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cls_id: int
    sep_id: int
    pad_id: int


class ModelMetadata(BaseModel):
    """Labels, thresholds, normalisation, windowing and provenance of one model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION
    name: str = "khabar"
    entity_types: list[str] = Field(default_factory=list)
    entity_display_names: dict[str, str] = Field(default_factory=dict)
    topic_labels: list[str] = Field(default_factory=list)
    topic_display_names: dict[str, str] = Field(default_factory=dict)
    topic_kinds: dict[str, TopicKind] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)
    normaliser: NormaliserSettings = Field(default_factory=NormaliserSettings)
    max_length: int = 256
    stride: int = 64
    # How long documents are cut into windows (serving/windows.py): "tokens" wherever
    # the count falls (models exported before sentence windows), "sentences" only
    # where a sentence begins.
    window_plan: Literal["tokens", "sentences"] = "tokens"
    decoder: Decoder = "viterbi"
    topic_windows: Literal["mean", "first"] = "mean"
    lexical_head: str | None = None  # file of the lexical topic head (serving/lexical.py)
    special_tokens: SpecialTokens
    onnx_files: dict[str, str] = Field(default_factory=lambda: {"int8": "model.int8.onnx"})
    default_variant: str = "int8"
    base_encoder: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    # sha256 of each file the runtime loads, by file name (written by export and ship).
    file_sha256: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelMetadata:
        if not self.entity_types and not self.topic_labels:
            raise ValueError("a model needs an entity head, a topic head or both")
        if self.default_variant not in self.onnx_files:
            raise ValueError(
                f"default_variant {self.default_variant!r} is not in onnx_files "
                f"{sorted(self.onnx_files)}"
            )
        if not 0 <= self.stride < self.max_length - 2:
            raise ValueError(f"stride {self.stride} must be below max_length - 2")
        return self

    @property
    def entity_tags(self) -> list[str]:
        """BIO tags in the column order of the entity head."""
        return bio_tags(self.entity_types) if self.entity_types else []

    @property
    def sections(self) -> list[str]:
        """Topic labels of kind ``section`` (one primary per article)."""
        return [label for label in self.topic_labels if self.topic_kinds.get(label) == "section"]

    def primary_section(self, topic_scores: Mapping[str, float]) -> str | None:
        """The best-scoring section of an article's topic scores (None without sections)."""
        scored = [label for label in self.sections if label in topic_scores]
        return max(scored, key=lambda label: topic_scores[label]) if scored else None

    @property
    def max_content(self) -> int:
        """Content tokens per window (``max_length`` minus the two special tokens)."""
        return self.max_length - 2

    @property
    def runtime_files(self) -> list[str]:
        """The files the runtime may load: every ONNX variant, the tokenizer, the lexical head."""
        names = [*self.onnx_files.values(), TOKENIZER_NAME]
        return names + ([self.lexical_head] if self.lexical_head else [])

    def with_file_hashes(self, directory: Path) -> ModelMetadata:
        """A copy that records the sha256 of every runtime file present in ``directory``."""
        sums = {
            name: sha256_of_file(directory / name)
            for name in self.runtime_files
            if (directory / name).is_file()
        }
        return self.model_copy(update={"file_sha256": sums})

    def verified_file(self, directory: Path, name: str) -> Path:
        """``directory/name`` after checking it against the sha256 recorded for it.

        A model that records no sums at all (exported before they were recorded) passes
        unchecked; :meth:`serving.predictor.Predictor.load` warns about it.

        Raises:
            ModelLoadError: The file is missing, has no recorded sum, or does not match it.
        """
        path = directory / name
        if not path.is_file():
            raise ModelLoadError(f"{path}: file not found; the model directory is incomplete")
        if not self.file_sha256:
            return path
        expected = self.file_sha256.get(name)
        if expected is None:
            raise ModelLoadError(f"{path}: no sha256 recorded for it in {METADATA_NAME}")
        actual = sha256_of_file(path)
        if actual != expected:
            raise ModelLoadError(
                f"{path}: corrupt or changed (sha256 {actual[:12]}..., {METADATA_NAME} records "
                f"{expected[:12]}...); reinstall or re-export the model"
            )
        return path

    def save(self, directory: Path) -> Path:
        """Write ``directory/khabar.json``: the one place the metadata file is written.

        The text goes to a temporary file beside it, which then replaces the old file in
        one rename: a reader or an interrupted write never sees half a file.
        """
        path = directory / METADATA_NAME
        text = json.dumps(self.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n"
        partial = directory / f".{METADATA_NAME}.{os.getpid()}.partial"
        try:
            with partial.open("w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, directory: Path) -> ModelMetadata:
        """Read and validate ``directory/khabar.json``.

        Raises:
            ModelLoadError: The file is missing, not JSON or not valid metadata.
        """
        path = directory / METADATA_NAME
        if not path.is_file():
            raise ModelLoadError(
                f"{directory} is not a khabar model directory (no {METADATA_NAME})"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.model_validate(data)
        except (json.JSONDecodeError, ValidationError, UnicodeDecodeError) as exc:
            first = str(exc).splitlines()
            detail = " ".join(first[:3]) if first else type(exc).__name__
            raise ModelLoadError(f"invalid model metadata {path}: {detail}") from exc
