"""CoNLL entity corpora (``token TAG`` per line, a blank line between sentences).

Every line is checked: a malformed line or an unknown tag is an error naming the
file and line, because a silently skipped line shifts every label after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from serving.errors import DataError


@dataclass(frozen=True)
class Sentence:
    """One sentence: tokens and their IOB2 tags (already mapped to the model's types)."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]

    @property
    def text(self) -> str:
        """The sentence as text: tokens joined by single spaces."""
        return " ".join(self.tokens)

    @classmethod
    def join(cls, sentences: Sequence[Sentence]) -> Sentence:
        """Consecutive sentences as one document (their texts joined by single spaces)."""
        return cls(
            tuple(token for s in sentences for token in s.tokens),
            tuple(tag for s in sentences for tag in s.tags),
        )

    def token_offsets(self) -> list[tuple[int, int]]:
        """Half-open character offsets of each token in :attr:`text`."""
        offsets, position = [], 0
        for token in self.tokens:
            offsets.append((position, position + len(token)))
            position += len(token) + 1
        return offsets


def _map_tag(raw: str, tag_map: Mapping[str, str], types: Sequence[str]) -> str | None:
    if raw == "O":
        return raw
    prefix, sep, entity_type = raw.partition("-")
    if not sep or prefix not in ("B", "I"):
        return None
    entity_type = tag_map.get(entity_type, entity_type)
    return f"{prefix}-{entity_type}" if entity_type in types else None


def read_conll(
    path: Path, types: Sequence[str], tag_map: Mapping[str, str] | None = None
) -> list[Sentence]:
    """Read a CoNLL file into sentences, mapping tag types (``PERS`` -> ``PER``).

    A stray ``I-X`` after ``O`` is repaired to ``B-X`` (IOB1-style files), so
    that every sentence is valid strict IOB2 for seqeval.

    Args:
        path: The file.
        types: Entity types the model knows.
        tag_map: Corpus type -> model type.

    Raises:
        DataError: The file is missing, or a line is not ``token TAG`` with a known tag.
    """
    tag_map = tag_map or {}
    path = Path(path)
    if not path.is_file():
        raise DataError(f"entity corpus not found: {path}")
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            sentences.append(Sentence(tuple(tokens), tuple(_repair_iob2(tags))))
            tokens.clear()
            tags.clear()

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            flush()
            continue
        parts = stripped.split()
        if len(parts) != 2:
            raise DataError(f"{path}:{number}: expected 'token TAG', got {stripped[:60]!r}")
        token, raw_tag = parts
        tag = _map_tag(raw_tag, tag_map, types)
        if tag is None:
            raise DataError(
                f"{path}:{number}: unknown tag {raw_tag!r} (model types: {', '.join(types)})"
            )
        tokens.append(token)
        tags.append(tag)
    flush()
    if not sentences:
        raise DataError(f"{path}: no sentences found")
    return sentences


def _repair_iob2(tags: list[str]) -> list[str]:
    repaired = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        repaired.append(tag)
        previous = tag
    return repaired


def split_dev(
    sentences: list[Sentence], dev_fraction: float
) -> tuple[list[Sentence], list[Sentence]]:
    """Carve the last ``dev_fraction`` of sentences off as the dev set.

    A contiguous block, so that dev articles are not interleaved with training ones.
    """
    n_dev = max(1, int(round(len(sentences) * dev_fraction)))
    return sentences[:-n_dev], sentences[-n_dev:]
