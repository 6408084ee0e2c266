"""From word spans to entities with ``[start, end)`` offsets into the ORIGINAL text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from serving.decode import WordSpan
from serving.normalise import Normalised
from serving.tokenise import Word


@dataclass(frozen=True)
class Entity:
    """A named entity with half-open ``[start, end)`` offsets into the text the user sent.

    ``text == original[start:end]`` always holds. ``name`` is the clean name
    (clitics and marks off, see :mod:`serving.names`), set once the whole article's
    mentions are known; empty until then.
    """

    text: str
    label: str
    start: int
    end: int
    score: float
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form with the score rounded for output."""
        return {
            "text": self.text,
            "name": self.name,
            "label": self.label,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
        }


def to_entities(
    spans: Sequence[WordSpan], words: Sequence[Word], normalised: Normalised
) -> list[Entity]:
    """Map word spans over normalised text onto the original text."""
    entities = []
    for span in spans:
        start, end = normalised.span_to_original(words[span.first].start, words[span.last].end)
        entities.append(
            Entity(
                text=normalised.original[start:end],
                label=span.label,
                start=start,
                end=end,
                score=span.score,
            )
        )
    return entities
