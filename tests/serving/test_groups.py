"""Entity groups: who and what an article is about, and how much."""

from __future__ import annotations

import json

import pytest

from benchmarks.articles import GROUPS_FIXTURE, pairs, read_ant, score_groups
from serving.groups import LEAD_CHARS, ArticleParts, group_entities, name_and_group
from serving.spans import Entity
from tests.corpora import require_corpora

ANT_FIRST_SHARD = "topics/ant-v2.1/ant-v2.1-000.jsonl"


def entities_in(text: str, *mentions: tuple[str, str]) -> list[Entity]:
    """Entities for each (mention, label), found in order in ``text``."""
    found, position = [], 0
    for mention, label in mentions:
        start = text.index(mention, position)
        found.append(Entity(mention, label, start, start + len(mention), 0.9))
        position = start + len(mention)
    return found


def groups_of(text: str, *mentions: tuple[str, str]):
    return name_and_group(text, entities_in(text, *mentions))


def test_full_name_and_surname_are_one_group() -> None:
    text = "التقى فلاديمير بوتين الوفد. وقال بوتين إن موسكو... وأكد بوتين ذلك ولبوتين رأي"
    named, groups = groups_of(
        text,
        ("فلاديمير بوتين", "PER"),
        ("بوتين", "PER"),
        ("موسكو", "LOC"),
        ("بوتين", "PER"),
        ("لبوتين", "PER"),
    )
    putin = next(group for group in groups if group.label == "PER")
    assert putin.name == "فلاديمير بوتين"
    assert putin.mentions == (0, 1, 3, 4)
    assert putin.count == 4
    assert putin.first == text.index("فلاديمير")
    assert named[4].name == "بوتين"
    assert named[4].text == "لبوتين"


def test_ambiguous_short_name_joins_neither() -> None:
    text = "سجل محمد صلاح ومحمد شريف، ثم قال محمد"
    _, groups = groups_of(text, ("محمد صلاح", "PER"), ("محمد شريف", "PER"), ("محمد", "PER"))
    assert sorted(group.mentions for group in groups) == [(0,), (1,), (2,)]


def test_hamza_ta_marbuta_and_article_fold_but_labels_must_fit_for_parts() -> None:
    text = "إسرائيل واسرائيل غزة وغزه الدولار ودولار الأهلي نادي الأهلي"
    _, groups = groups_of(
        text,
        ("إسرائيل", "LOC"),
        ("اسرائيل", "LOC"),
        ("غزة", "LOC"),
        ("غزه", "LOC"),
        ("الدولار", "MISC"),
        ("دولار", "MISC"),
        ("الأهلي", "PER"),
        ("نادي الأهلي", "ORG"),
    )
    assert sorted(group.mentions for group in groups) == [(0, 1), (2, 3), (4, 5), (6,), (7,)]


def test_a_middle_name_may_be_left_out() -> None:
    text = "دييغو أرماندو مارادونا ... دييغو مارادونا ... مارادونا"
    _, groups = groups_of(
        text, ("دييغو أرماندو مارادونا", "PER"), ("دييغو مارادونا", "PER"), ("مارادونا", "PER")
    )
    assert [group.mentions for group in groups] == [(0, 1, 2)]
    assert groups[0].name == "دييغو أرماندو مارادونا"


def test_title_and_lead_mentions_weigh_more() -> None:
    filler = "خبر " * (LEAD_CHARS // 4 + 10)
    text = f"ماكرون في القاهرة\nقال عون {filler} بيروت وبيروت"
    entities = entities_in(
        text, ("ماكرون", "PER"), ("عون", "PER"), ("بيروت", "LOC"), ("وبيروت", "LOC")
    )
    parts = ArticleParts.of(text)
    assert parts.title_end == text.index("\n")
    assert [parts.weight(e.start) for e in entities] == [3.0, 2.0, 1.0, 1.0]
    _, groups = name_and_group(text, entities)
    # one title mention outweighs two in the body; a lead mention equals them (ties:
    # first mention first)
    assert [(g.name, g.count, round(g.salience, 4)) for g in groups] == [
        ("ماكرون", 1, round(3 / 7, 4)),
        ("عون", 1, round(2 / 7, 4)),
        ("بيروت", 2, round(2 / 7, 4)),
    ]


def test_a_long_first_line_is_not_a_title() -> None:
    text = "كلمة " * 60 + "\nبقية"
    assert ArticleParts.of(text).title_end == 0


def test_saliences_sum_to_one_and_every_mention_is_in_one_group() -> None:
    text = "زار ماكرون بيروت ثم عاد ماكرون إلى باريس"
    entities = entities_in(
        text, ("ماكرون", "PER"), ("بيروت", "LOC"), ("ماكرون", "PER"), ("باريس", "LOC")
    )
    groups = group_entities(name_and_group(text, entities)[0], text)
    assert sum(group.salience for group in groups) == pytest.approx(1.0)
    assert sorted(i for group in groups for i in group.mentions) == [0, 1, 2, 3]
    assert [g.salience for g in groups] == sorted((g.salience for g in groups), reverse=True)
    assert groups[0].to_dict() == {
        "name": "ماكرون",
        "label": "PER",
        "mentions": [0, 2],
        "count": 2,
        "first": 4,
        "salience": 0.5,
    }


def test_no_entities_no_groups() -> None:
    assert name_and_group("لا شيء هنا", []) == ([], [])


def test_pairs_counts_each_pair_once() -> None:
    assert pairs([[2, 0, 1], [3]]) == {(0, 1), (0, 2), (1, 2)}


def test_grouping_on_ant_articles_with_gold_groups() -> None:
    articles = json.loads(GROUPS_FIXTURE.read_text(encoding="utf-8"))["articles"]
    assert len(articles) >= 30
    root = require_corpora(ANT_FIRST_SHARD)
    texts = read_ant(root / ANT_FIRST_SHARD.rsplit("/", 1)[0], {a["id"] for a in articles})
    assert len(texts) == len(articles), "fixture articles missing from the ANT corpus"
    score = score_groups(articles, texts)
    assert score.gold >= 300
    assert score.f1 >= 0.90, (score.precision, score.recall)
