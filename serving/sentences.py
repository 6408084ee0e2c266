"""Where sentences begin: the places a long document is best cut into windows.

The entity head learnt on whole sentences, alone or packed with their neighbours;
a window that cuts a sentence in two shows the words at the cut a context the model
never saw, and a name's type then depends on where the cut happened to fall. Windows
made of whole sentences (:func:`serving.windows.plan_sentence_windows`) avoid that.

A sentence ends at ``.``, ``!``, ``?``, ``؟`` or ``…`` followed by a space, or at a
line break. A mark with no space after it (``3.5``, ``...و``) ends nothing, so
decimals and runs of dots stay inside their sentence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serving.tokenise import Word

END_MARKS = frozenset({".", "!", "?", "؟", "…"})


def sentence_start_words(words: Sequence[Word], text: str) -> list[int]:
    r"""Indices of the words that begin a sentence, the first word excluded.

    Args:
        words: The document's words, in order, with offsets into ``text``.
        text: The text the offsets point into.

    >>> from serving.tokenise import split_words
    >>> text = "قال الرئيس. ثم بلغ 3.5 في المئة\nوذهب"
    >>> sentence_start_words(split_words(text), text)
    [3, 10]
    """
    starts = []
    for index in range(1, len(words)):
        previous, word = words[index - 1], words[index]
        gap = text[previous.end : word.start]
        if "\n" in gap or (gap and previous.text in END_MARKS):
            starts.append(index)
    return starts


def sentence_start_tokens(
    words: Sequence[Word], text: str, word_first_token: np.ndarray
) -> list[int]:
    """Token positions where a sentence begins (ascending, never 0).

    A sentence whose first words have no sub-token (nothing the tokenizer keeps)
    begins at its first word that has one.
    """
    starts: set[int] = set()
    n_words = len(words)
    for index in sentence_start_words(words, text):
        while index < n_words and word_first_token[index] < 0:
            index += 1
        if index < n_words and word_first_token[index] > 0:
            starts.add(int(word_first_token[index]))
    return sorted(starts)
