"""The rule for texts with too little Arabic to judge their topics."""

from __future__ import annotations

import pytest

from serving.language import MIN_ARABIC_WORDS, is_arabic_letter, too_little_arabic
from serving.tokenise import split_words


def warning_for(text: str) -> str | None:
    return too_little_arabic(w.text for w in split_words(text))


@pytest.mark.parametrize(
    "text",
    [
        "a",
        "Hello world, this is an English sentence about politics",
        "https://example.com/news?id=42",
        "12345 67890",
        "😀😀😀",
        "زار بيروت",  # two Arabic words: fewer than three
        "و ب ل",  # single letters are not words
        "The president زار بيروت and Cairo and Paris and London yesterday",  # mostly Latin
    ],
)
def test_texts_without_enough_arabic_get_a_warning(text: str) -> None:
    warning = warning_for(text)
    assert warning is not None
    assert "too little Arabic" in warning
    assert f"at least {MIN_ARABIC_WORDS} words" in warning


@pytest.mark.parametrize(
    "text",
    [
        "فاز نادي الأهلي على الوداد",
        "زار الرئيس ماكرون بيروت",
        "قال الرئيس Emmanuel Macron إن فرنسا ستدعم لبنان",  # Arabic with a Latin name
        "مُحَمَّدٌ وَصَلَ إِلَى القَاهِرَةِ",  # diacritics are not letters and do not count
        "١٢ قتيلا في غزة اليوم",
    ],
)
def test_arabic_texts_are_judged(text: str) -> None:
    assert warning_for(text) is None


def test_arabic_letters_and_not_marks_or_digits() -> None:
    assert is_arabic_letter("ب") and is_arabic_letter("ی") and is_arabic_letter("ٱ")
    assert not is_arabic_letter("\u064e")  # fatha
    assert not is_arabic_letter("١")
    assert not is_arabic_letter("ـ")  # tatweel
    assert not is_arabic_letter("،")
    assert not is_arabic_letter("a")
