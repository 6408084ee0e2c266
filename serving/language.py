"""Is there enough Arabic in a text to judge its topics?

The topic heads learnt from Arabic news articles. On a text with (almost) no Arabic,
such as ``"a"``, a URL or an English sentence, they still produce scores, some of them
confidently high, which mean nothing. Such texts get no topics over threshold and a
warning saying why; their raw ``topic_scores`` are still reported.

The rule: a text is judged when it has at least :data:`MIN_ARABIC_WORDS` Arabic words
(words with at least two Arabic letters) and at least half of its letters are Arabic.
"""

from __future__ import annotations

from collections.abc import Iterable

# Arabic letters: the Arabic block's letters (hamza to yeh, and the extended letters used
# for Persian, Urdu and Maghrebi spellings), the Arabic Supplement and Extended-A blocks.
# Marks, digits, tatweel and punctuation are not letters and do not count.
_ARABIC_LETTER_RANGES = (
    (0x0620, 0x063F),
    (0x0641, 0x064A),
    (0x066E, 0x066F),
    (0x0671, 0x06D3),
    (0x06D5, 0x06D5),
    (0x06EE, 0x06EF),
    (0x06FA, 0x06FC),
    (0x06FF, 0x06FF),
    (0x0750, 0x077F),
    (0x08A0, 0x08C9),
)
MIN_ARABIC_WORDS = 3
MIN_ARABIC_SHARE = 0.5
# Letters an Arabic word needs: one letter alone (a conjunction, an initial) is not enough.
_LETTERS_PER_WORD = 2


def is_arabic_letter(char: str) -> bool:
    """Whether ``char`` is an Arabic letter (not a mark, digit or punctuation)."""
    code = ord(char)
    return any(low <= code <= high for low, high in _ARABIC_LETTER_RANGES)


def too_little_arabic(words: Iterable[str]) -> str | None:
    """Why the topics of a text made of ``words`` cannot be judged, or ``None`` if they can.

    Args:
        words: The text's words (as :func:`serving.tokenise.split_words` finds them).

    Returns:
        A warning for the result, naming what was found and what the rule needs.
    """
    arabic_words = arabic_letters = letters = 0
    for word in words:
        in_word = 0
        for char in word:
            if char.isalpha():
                letters += 1
                if is_arabic_letter(char):
                    in_word += 1
        arabic_letters += in_word
        if in_word >= _LETTERS_PER_WORD:
            arabic_words += 1
    if arabic_words >= MIN_ARABIC_WORDS and arabic_letters >= MIN_ARABIC_SHARE * letters:
        return None
    share = f"{arabic_letters / letters:.0%}" if letters else "none"
    return (
        f"too little Arabic to judge topics ({arabic_words} Arabic words, {share} of the "
        f"letters Arabic; at least {MIN_ARABIC_WORDS} words and "
        f"{MIN_ARABIC_SHARE:.0%} are needed): no topic is reported over its threshold"
    )
