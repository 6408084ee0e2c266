"""Clean names: clitics off only before a known name, marks off, letters kept."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.articles import NAMES_FIXTURE, score_names
from serving.decode import WordSpan
from serving.gazetteer import Gazetteer, default_gazetteer, fold
from serving.names import clean_names, join_known_names, name_tokens, split_known_pairs, surface

MUST_STAY_WHOLE = ("وارسو", "بيروت", "لبنان", "فرنسا")


def name_of(mention: str, *others: str, label: str | None = None, text: str = "") -> str:
    return clean_names([mention, *others], [label, *[None] * len(others)], text)[0]


class TestCleanName:
    @pytest.mark.parametrize("word", MUST_STAY_WHOLE)
    def test_names_that_begin_with_a_clitic_letter_stay_whole(self, word: str) -> None:
        assert name_of(word) == word
        assert name_of(word, word[1:], label="LOC") == word

    def test_clitic_comes_off_before_a_gazetteer_name(self) -> None:
        assert name_of("بباريس", label="LOC") == "باريس"
        assert name_of("وأوكرانيا", label="LOC") == "أوكرانيا"
        assert name_of("وزيلينسكي", label="PER") == "زيلينسكي"
        assert name_of("والولايات المتحدة", label="LOC") == "الولايات المتحدة"

    def test_li_before_the_article_gives_the_article_back(self) -> None:
        assert name_of("للأمم المتحدة", label="ORG") == "الأمم المتحدة"
        assert name_of("للبنان", label="LOC") == "لبنان"

    def test_clitic_comes_off_before_a_name_known_from_the_article(self) -> None:
        assert name_of("وكانغهام") == "وكانغهام"
        assert name_of("وكانغهام", "خافيير كانغهام", label="PER") == "كانغهام"

    def test_unknown_remainder_keeps_the_clitic(self) -> None:
        assert name_of("وفيزنر", label="PER") == "وفيزنر"

    def test_a_person_is_not_cut_to_a_place(self) -> None:
        # لاوس is a country: كلاوس (Klaus) must not become it.
        assert "لاوس" in {key for key in default_gazetteer().labels}
        assert name_of("كلاوس", label="PER") == "كلاوس"

    def test_marks_and_tatweel_go_hamza_stays(self) -> None:
        assert name_of("إسرائيلُ") == "إسرائيل"
        assert name_of("القاهـــرة") == "القاهرة"
        assert name_of('بـ"ذا فويس"') == '"ذا فويس"'

    def test_hamza_after_a_clitic_marks_the_clitic(self) -> None:
        assert name_of("بأجدير", label="LOC") == "أجدير"
        assert name_of("كأس", label="MISC") == "كأس"

    def test_head_nouns_make_a_several_word_name_known(self) -> None:
        assert name_of("وحركة الجهاد الإسلامي", label="ORG") == "حركة الجهاد الإسلامي"
        assert name_of("وحركة", label="ORG") == "وحركة"

    def test_several_words_standing_alone_in_the_text_are_known(self) -> None:
        text = "قالت هيئة مكافحة الفساد ... وأضاف رئيس لهيئة مكافحة الفساد"
        assert name_of("لهيئة مكافحة الفساد", text=text) == "هيئة مكافحة الفساد"

    def test_custom_gazetteer(self) -> None:
        gazetteer = Gazetteer.from_names([("LOC", "زحلة")])
        assert clean_names(["بزحلة"], ["LOC"], gazetteer=gazetteer) == ["زحلة"]

    @given(st.text(alphabet=list("وفبلكالمحدنرسيتأإة ـ\u064e"), max_size=20))
    def test_a_name_is_the_mention_less_a_leading_clitic(self, mention: str) -> None:
        name = name_of(mention)
        written = surface(mention)
        assert len(name) <= len(written)
        assert written.endswith(name) or (name.startswith("ال") and written.endswith(name[2:]))

    def test_name_tokens_fold_and_drop_the_article(self) -> None:
        assert name_tokens("الدولار") == name_tokens("دولار")
        assert name_tokens("إسرائيل") == name_tokens("اسرائيل")
        assert name_tokens("الله") == (fold("الله"),)


def fixture_rows(part: str) -> list[dict]:
    return json.loads(NAMES_FIXTURE.read_text(encoding="utf-8"))[part]


def test_fixture_is_big_enough_and_has_the_hard_cases() -> None:
    rows = fixture_rows("mentions")
    assert len(rows) >= 200
    sources = {row["source"].split(":")[0] for row in rows}
    assert sources == {"anercorp", "ant"}
    written = {row["text"] for row in rows}
    assert set(MUST_STAY_WHOLE) <= written


def test_clean_names_of_real_mentions() -> None:
    score = score_names(fixture_rows("mentions"))
    assert score.accuracy >= 0.95, score.wrong
    assert score.lost_letters == []


class TestJoinKnownNames:
    WORDS = ["التقى", "رجب", "طيب", "أردوغان", "محمد", "صلاح", "في", "أنقرة"]

    def test_pieces_of_a_known_name_become_one_mention(self) -> None:
        spans = [WordSpan("PER", 1, 2, 0.9), WordSpan("PER", 3, 3, 0.6)]
        [joined] = join_known_names(spans, self.WORDS)
        assert (joined.label, joined.first, joined.last) == ("PER", 1, 3)
        assert joined.score == pytest.approx((0.9 * 2 + 0.6) / 3)

    def test_unknown_or_mixed_neighbours_stay_apart(self) -> None:
        gazetteer = Gazetteer.from_names([("PER", "رجب طيب أردوغان")])
        unknown = [WordSpan("PER", 3, 3, 0.9), WordSpan("PER", 4, 5, 0.9)]
        assert join_known_names(unknown, self.WORDS, gazetteer) == unknown
        other_label = [WordSpan("PER", 1, 2, 0.9), WordSpan("LOC", 3, 3, 0.9)]
        assert join_known_names(other_label, self.WORDS, gazetteer) == other_label
        gap = [WordSpan("PER", 1, 1, 0.9), WordSpan("PER", 3, 3, 0.9)]
        assert join_known_names(gap, self.WORDS, gazetteer) == gap
        as_place = Gazetteer.from_names([("LOC", "رجب طيب أردوغان")])
        split = [WordSpan("PER", 1, 2, 0.9), WordSpan("PER", 3, 3, 0.9)]
        assert join_known_names(split, self.WORDS, as_place) == split

    def test_the_longest_known_run_wins_and_the_rest_follows(self) -> None:
        gazetteer = Gazetteer.from_names([("PER", "رجب طيب"), ("PER", "رجب طيب أردوغان")])
        spans = [
            WordSpan("PER", 1, 1, 1.0),
            WordSpan("PER", 2, 2, 1.0),
            WordSpan("PER", 3, 3, 1.0),
            WordSpan("LOC", 7, 7, 0.8),
        ]
        joined = join_known_names(spans, self.WORDS, gazetteer)
        assert [(s.first, s.last, s.label) for s in joined] == [(1, 3, "PER"), (7, 7, "LOC")]


class TestSplitKnownPairs:
    WORDS = ["التقى", "بوتين", "وزيلينسكي", "في", "إسطنبول", "وليد", "جنبلاط", "وحده"]

    def test_two_known_names_joined_by_waw_become_two_mentions(self) -> None:
        parts = split_known_pairs([WordSpan("PER", 1, 2, 0.8)], self.WORDS)
        assert [(s.label, s.first, s.last, s.score) for s in parts] == [
            ("PER", 1, 1, 0.8),
            ("PER", 2, 2, 0.8),
        ]

    def test_a_name_that_begins_with_waw_or_an_unknown_part_stays_whole(self) -> None:
        gazetteer = Gazetteer.from_names([("PER", "بوتين"), ("PER", "جنبلاط")])
        waw_name = [WordSpan("PER", 5, 6, 0.9)]  # وليد جنبلاط: "ليد" is no name
        assert split_known_pairs(waw_name, self.WORDS, gazetteer) == waw_name
        unknown_second = [WordSpan("PER", 1, 2, 0.9)]  # زيلينسكي not listed here
        assert split_known_pairs(unknown_second, self.WORDS, gazetteer) == unknown_second
        as_places = Gazetteer.from_names([("LOC", "بوتين"), ("LOC", "زيلينسكي")])
        assert split_known_pairs(unknown_second, self.WORDS, as_places) == unknown_second
