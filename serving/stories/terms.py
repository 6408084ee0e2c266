"""Term and entity evidence: which of a story's anchors and context terms a text names.

Text and variants are folded the same way as the keyword story rules fold them
(hamza alefs to a bare alef; diacritics, tatweel and invisible marks removed; ``#``
and ``_`` to spaces), so "أوكرانيا" and "اوكرانيا" match alike. A variant may carry the
one-letter proclitics (و ف ب ل ك) and the article; a variant of four letters or more
matches as the start of a word (أوكراني → الأوكرانية), a shorter one only as a whole word
or with a nisba/plural ending, so "قرم" (Crimea) never matches "قرمزي" (scarlet).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from serving.stories.schema import Term

_HAMZA_ALEFS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "#": " ", "_": " "})
_DROP = re.compile(
    "[\u0610-\u061a\u064b-\u065f\u0670\u0640\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
_PROCLITICS = r"(?:[وفبلك]?(?:ال)?|لل|[وف][بلك](?:ال)?|[وف]لل)"
_SHORT_ENDINGS = r"(?:ي|ية|يه|يين|يون|ين|ون|ات|ها|هم)?"
_LONG = 4


def fold(text: str) -> str:
    """The matching form of a text: no diacritics or tatweel, bare alefs, lower case."""
    return _DROP.sub("", text).translate(_HAMZA_ALEFS).lower()


def _variant_pattern(variant: str) -> str:
    folded = " ".join(fold(variant).split())
    core = folded.removeprefix("ال") if len(folded) > 4 else folded
    body = r"\s+".join(re.escape(part) for part in core.split(" "))
    tail = "" if len(core) >= _LONG else rf"{_SHORT_ENDINGS}(?!\w)"
    return body + tail


class TermMatcher:
    """Compiled patterns of a list of terms; counts distinct terms found in a text."""

    def __init__(self, terms: Sequence[Term]) -> None:
        """Compile one alternation per term."""
        self.names = [term.name for term in terms]
        self._patterns = [
            re.compile(
                rf"(?<!\w){_PROCLITICS}(?:{'|'.join(_variant_pattern(v) for v in term.variants)})"
            )
            for term in terms
        ]

    def found(self, folded: str) -> list[str]:
        """Names of the terms a folded text contains."""
        return [
            name for name, p in zip(self.names, self._patterns, strict=True) if p.search(folded)
        ]

    def count(self, folded: str) -> int:
        """How many distinct terms a folded text contains."""
        return sum(1 for p in self._patterns if p.search(folded))

    def count_in(self, folded_texts: Iterable[str]) -> int:
        """How many distinct terms occur in any of several folded texts (entity mentions)."""
        joined = " | ".join(folded_texts)
        return self.count(joined) if joined else 0
