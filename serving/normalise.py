"""Arabic text normalisation that never loses track of where a character came from.

Models see normalised text (no tashkeel, no tatweel, no bidi or zero-width marks,
optionally unified letters and digits); users get spans into the text they sent.
Every operation here deletes a character or maps it to exactly one character, so
the offset map is a plain index array and spans map back exactly.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from pydantic import BaseModel, ConfigDict

# Arabic diacritics (harakat, tanween, shadda, sukun, small high marks, superscript alef)
_DIACRITICS = frozenset(
    [chr(c) for c in range(0x0610, 0x061B)]
    + [chr(c) for c in range(0x064B, 0x0660)]
    + ["\u0670"]
    + [chr(c) for c in range(0x06D6, 0x06DD)]
    + [chr(c) for c in range(0x06DF, 0x06E5)]
    + [chr(c) for c in range(0x06E7, 0x06E9)]
    + [chr(c) for c in range(0x06EA, 0x06EE)]
)
_TATWEEL = "\u0640"
# Bidi controls and zero-width characters that carry no meaning for the model.
_INVISIBLE_MARKS = frozenset(
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2066\u2067\u2068\u2069\u061c\ufeff\u00ad"
)
_LETTER_MAP = {
    "\u0622": "\u0627",  # alef madda -> alef
    "\u0623": "\u0627",  # alef hamza above -> alef
    "\u0625": "\u0627",  # alef hamza below -> alef
    "\u0671": "\u0627",  # alef wasla -> alef
    "\u0649": "\u064a",  # alef maqsura -> yeh
    "\u0629": "\u0647",  # teh marbuta -> heh
}
_DIGIT_MAP = {chr(0x0660 + i): str(i) for i in range(10)} | {
    chr(0x06F0 + i): str(i) for i in range(10)
}
# Whitespace that tokenisers may treat inconsistently becomes a plain space.
_SPACE_MAP = {"\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u3000": " "}


class NormaliserSettings(BaseModel):
    """What the normaliser removes or unifies; saved with every model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strip_diacritics: bool = True
    strip_tatweel: bool = True
    strip_invisible: bool = True
    unify_letters: bool = False
    unify_digits: bool = True


@dataclass(frozen=True)
class Normalised:
    """Normalised text and, for each of its characters, the index it came from.

    ``to_original`` has ``len(text) + 1`` entries; the last is ``len(original)``
    so that a half-open span ``[start, end)`` over ``text`` maps with
    ``to_original[start]`` and ``to_original[end - 1] + 1``.
    """

    original: str
    text: str
    to_original: tuple[int, ...] = field(repr=False)

    def span_to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a half-open span of the normalised text onto the original text.

        Marks removed right after the span's last character (tashkeel, tatweel)
        belong to that word, so the span is widened over them; bidi and
        zero-width marks are not, so a span never starts or ends on one.
        """
        if not 0 <= start < end <= len(self.text):
            raise ValueError(f"span [{start}, {end}) outside text of length {len(self.text)}")
        orig_start = self.to_original[start]
        orig_end = self.to_original[end - 1] + 1
        limit = self.to_original[end] if end < len(self.text) else len(self.original)
        while orig_end < limit and _is_word_mark(self.original[orig_end]):
            orig_end += 1
        return orig_start, orig_end


def _is_word_mark(char: str) -> bool:
    return char in _DIACRITICS or char == _TATWEEL or unicodedata.category(char) == "Mn"


def normalise(text: str, settings: NormaliserSettings | None = None) -> Normalised:
    """Normalise ``text`` and keep an index map back to it.

    Args:
        text: The text exactly as the user sent it.
        settings: What to strip and unify; defaults to ``NormaliserSettings()``.

    Returns:
        The normalised text with its offset map.

    >>> n = normalise("مُحَمَّد")
    >>> n.text, n.span_to_original(0, 4)
    ('محمد', (0, 8))
    """
    settings = settings or NormaliserSettings()
    out: list[str] = []
    to_original: list[int] = []
    for index, char in enumerate(text):
        if settings.strip_diacritics and char in _DIACRITICS:
            continue
        if settings.strip_tatweel and char == _TATWEEL:
            continue
        if settings.strip_invisible and char in _INVISIBLE_MARKS:
            continue
        if settings.unify_letters:
            char = _LETTER_MAP.get(char, char)
        if settings.unify_digits:
            char = _DIGIT_MAP.get(char, char)
        char = _SPACE_MAP.get(char, char)
        out.append(char)
        to_original.append(index)
    to_original.append(len(text))
    return Normalised(original=text, text="".join(out), to_original=tuple(to_original))


# Every character normalise() can delete or change lies in these ranges.
_CHANGEABLE = [*range(0x0000, 0x0800), *range(0x2000, 0x2070), 0x3000, 0xFEFF]


@lru_cache(maxsize=8)
def _translation(settings: NormaliserSettings) -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for code in _CHANGEABLE:
        char = chr(code)
        out = normalise(char, settings).text
        if out != char:
            table[code] = out or None
    return table


def normalised_text(text: str, settings: NormaliserSettings | None = None) -> str:
    """``normalise(text, settings).text`` without the offset map, at ``str.translate`` speed.

    For comparing names and searching whole articles, where no span is mapped back.

    >>> normalised_text("مُحَمَّـد ٣")
    'محمد 3'
    """
    return text.translate(_translation(settings or NormaliserSettings()))
