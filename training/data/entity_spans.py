"""Entity sets annotated as character spans over texts kept in a corpus (stand-off).

The project's own FIGNEWS 2024 entity set is stored as post ids, text hashes and
``[start, end, label]`` spans: the texts stay in the corpus they come from, and a hash
mismatch means the corpus is not the one that was annotated, which is an error rather
than a silently wrong score.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from serving.errors import DataError
from training.data.topics import read_jsonl


@dataclass(frozen=True)
class SpanDocument:
    """One annotated text: its id, the text, and gold ``(start, end, label)`` spans."""

    id: str
    text: str
    spans: tuple[tuple[int, int, str], ...]


def text_sha256(text: str) -> str:
    """Hex sha256 of a text's UTF-8 bytes (what the annotation files record)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_span_documents(annotations: Path, texts: Path, types: list[str]) -> list[SpanDocument]:
    """Join a stand-off annotation file with the corpus that holds its texts.

    Args:
        annotations: JSON lines ``{"id", "sha256", "spans": [[start, end, label], ...]}``.
        texts: The corpus (JSON lines with ``id`` and ``text``).
        types: The entity types the model knows; another label is an error.

    Raises:
        DataError: A file is missing, an id is not in the corpus, a text's hash differs,
            or a span is out of range or has an unknown label.
    """
    if not annotations.is_file():
        raise DataError(f"entity annotations not found: {annotations}")
    # Ids are not unique in every corpus: a post is found by its id and its text's hash.
    corpus: dict[str, dict[str, str]] = {}
    for _, record in read_jsonl(texts, ("text",), ("id",)):
        text = str(record["text"])
        corpus.setdefault(str(record["id"]), {})[text_sha256(text)] = text
    documents = []
    with annotations.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{annotations}:{number}"
            try:
                record = json.loads(line)
                key, digest, raw_spans = str(record["id"]), record["sha256"], record["spans"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"{where}: not an annotation record ({exc})") from exc
            if key not in corpus:
                raise DataError(f"{where}: id {key!r} is not in {texts}")
            text = corpus[key].get(digest)
            if text is None:
                raise DataError(f"{where}: the text of {key!r} in {texts} is not the one annotated")
            spans = []
            for start, end, label in raw_spans:
                if label not in types or not 0 <= start < end <= len(text):
                    raise DataError(f"{where}: bad span {[start, end, label]}")
                spans.append((int(start), int(end), str(label)))
            documents.append(SpanDocument(key, text, tuple(sorted(spans))))
    return documents
