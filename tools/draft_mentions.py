"""Draft the mentions of ANT articles for hand-made gold groups (tests/fixtures).

Runs a model over each article one sentence at a time (the first shipped model
found no entities in whole articles) and prints JSON lines of mentions with
offsets into the article as khabar reads it from ANT (title, a line break, text).
Gold groups are then written by hand by reading these mentions::

    python -m tools.draft_mentions ../shared/data/topics/ant-v2.1 ID [ID ...] > draft.jsonl
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from benchmarks.articles import read_ant
from serving.metadata import DEFAULT_MODEL_DIR
from serving.predictor import Predictor

# A sentence ends at a line break or after . ! ? ؟ followed by a space.
_SENTENCE_END = re.compile(r"\n+|(?<=[.!?؟])\s+")


def sentences(text: str) -> list[tuple[int, str]]:
    """``(offset, sentence)`` pairs covering the text."""
    out, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if text[start : match.start()].strip():
            out.append((start, text[start : match.start()]))
        start = match.end()
    if text[start:].strip():
        out.append((start, text[start:]))
    return out


def mentions(predictor: Predictor, text: str) -> list[dict[str, object]]:
    """The model's mentions of one article, found sentence by sentence."""
    parts = sentences(text)
    results = predictor.analyze([part for _, part in parts])
    found = []
    for (offset, _), result in zip(parts, results, strict=True):
        for entity in result.entities:
            start, end = offset + entity.start, offset + entity.end
            found.append(
                {"start": start, "end": end, "text": text[start:end], "label": entity.label}
            )
    return found


def main() -> None:
    """Print one JSON line per article: its id and its mentions."""
    corpus, ids = Path(sys.argv[1]), sys.argv[2:]
    predictor = Predictor.load(DEFAULT_MODEL_DIR)
    for article_id, text in read_ant(corpus, set(ids)).items():
        line = {"id": article_id, "mentions": mentions(predictor, text)}
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
