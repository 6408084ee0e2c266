"""Story definitions scored by the shipped model and story encoder, on texts written here.

Nothing asserts a score value: only which side of its threshold a text falls, so a
retrained model or a recalibrated definition keeps these tests meaningful.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from serving.metadata import DEFAULT_MODEL_DIR
from serving.predictor import Predictor
from serving.stories.encoder import DEFAULT_STORY_ENCODER_DIR, ENCODER_INFO
from serving.stories.scorer import load_story_scorer

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "khabar.json").is_file()
    or not (DEFAULT_STORY_ENCODER_DIR / ENCODER_INFO).is_file(),
    reason="needs models/default and models/story-encoder",
)

ROOT = Path(__file__).resolve().parents[2]
ISTANBUL = (
    "أعلن الكرملين أن الرئيس فلاديمير بوتين سيلتقي نظيره الأوكراني فولوديمير زيلينسكي "
    "في إسطنبول الأسبوع المقبل لبحث وقف إطلاق النار"
)
FOOTBALL_KYIV = (
    "فاز فريق دينامو كييف على ضيفه شاختار دونيتسك بثلاثة أهداف مقابل هدف في قمة الدوري "
    "الأوكراني لكرة القدم على الملعب الأولمبي في العاصمة كييف أمام أربعين ألف متفرج"
)
NATO_EXERCISE = (
    "بدأت روسيا مناورات عسكرية واسعة قرب حدود دول البلطيق بمشاركة آلاف الجنود، وقال "
    "حلف شمال الأطلسي إنه يتابع التدريبات وسيجري مناوراته الخاصة في بولندا الشهر المقبل"
)
GAZA_TRUCE = (
    "قال الوسطاء إن إسرائيل وحركة حماس تقتربان من اتفاق هدنة في غزة يشمل الإفراج عن "
    "محتجزين وأسرى ودخول المساعدات"
)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    base = Predictor.load(DEFAULT_MODEL_DIR, threads=2)
    return base.with_stories(load_story_scorer(threads=2))


def _over(predictor: Predictor, text: str, label: str) -> bool:
    [result] = predictor.analyze([text])
    selected = {name for name, _ in result.topics}
    threshold = predictor.stories.thresholds()[label]  # type: ignore[union-attr]
    assert (label in selected) == (result.topic_scores[label] >= threshold)
    return label in selected


def test_istanbul_talks_are_russia_ukraine(predictor: Predictor) -> None:
    assert _over(predictor, ISTANBUL, "russia_ukraine")


def test_project_example_is_russia_ukraine(predictor: Predictor) -> None:
    lines = (ROOT / "examples" / "articles.jsonl").read_text(encoding="utf-8").splitlines()
    [example] = [json.loads(line) for line in lines if '"russia-ukraine-1"' in line]
    assert _over(predictor, example["text"], "russia_ukraine")


@pytest.mark.parametrize(
    "text",
    [
        FOOTBALL_KYIV,
        NATO_EXERCISE,
    ],
    ids=["football", "nato"],
)
def test_near_misses_stay_under(predictor: Predictor, text: str) -> None:
    assert not _over(predictor, text, "russia_ukraine")


def test_an_excluded_section_scores_zero_whatever_the_anchors(predictor: Predictor) -> None:
    """Kyiv and Donetsk are anchors; a football report naming them is still not the war."""
    scorer = predictor.stories
    assert scorer is not None
    russia = scorer.labels.index("russia_ukraine")
    assert "sport" in scorer.stories[russia].definition.exclude_sections
    [result] = predictor.with_stories(None).analyze([FOOTBALL_KYIV])
    assert predictor.metadata.primary_section(result.topic_scores) == "sport"
    assert scorer.score([FOOTBALL_KYIV], sections=["politics"])[0, russia] > 0.0
    assert scorer.score([FOOTBALL_KYIV], sections=["sport"])[0, russia] == 0.0


def test_a_definition_excluding_an_unknown_section_fails_at_load(
    predictor: Predictor, tmp_path: Path
) -> None:
    from serving.errors import ConfigError

    source = (ROOT / "examples" / "stories" / "sudan_war.yaml").read_text(encoding="utf-8")
    (tmp_path / "sudan_war.yaml").write_text(
        source + "\nexclude_sections: [sports]\n", encoding="utf-8"
    )
    scorer = load_story_scorer([tmp_path], threads=1)
    with pytest.raises(ConfigError, match="story sudan_war: field exclude_sections: sports"):
        predictor.with_stories(scorer)


def test_gaza_truce_is_middle_east_conflict_not_russia(predictor: Predictor) -> None:
    assert _over(predictor, GAZA_TRUCE, "middle_east_conflict")
    assert not _over(predictor, GAZA_TRUCE, "russia_ukraine")


def test_story_scores_sit_beside_model_topics(predictor: Predictor) -> None:
    [result] = predictor.analyze([ISTANBUL])
    assert set(predictor.metadata.topic_labels) <= set(result.topic_scores)
    assert predictor.topic_kind("russia_ukraine") == "story"
    scores = [score for _, score in result.topics]
    assert scores == sorted(scores, reverse=True)


def test_new_story_needs_only_a_file(predictor: Predictor) -> None:
    scorer = load_story_scorer([ROOT / "examples" / "stories"], threads=2)
    with_sudan = predictor.with_stories(scorer)
    text = "تجددت المعارك بين الجيش السوداني وقوات الدعم السريع في الخرطوم ودارفور"
    assert _over(with_sudan, text, "sudan_war")
    assert not _over(with_sudan, FOOTBALL_KYIV, "sudan_war")


def test_a_texts_story_scores_do_not_depend_on_its_batch_mates(predictor: Predictor) -> None:
    scorer = predictor.stories
    assert scorer is not None
    texts = [ISTANBUL, FOOTBALL_KYIV, NATO_EXERCISE, GAZA_TRUCE]
    together = scorer.score(texts)
    for row, text in enumerate(texts):
        # Only float rounding of the similarity products may differ (batched, the int8
        # encoder's activation scales moved scores by up to 0.03).
        np.testing.assert_allclose(scorer.score([text])[0], together[row], atol=1e-6)


def _selected(predictor: Predictor, texts: list[str], label: str) -> np.ndarray:
    return np.array([label in dict(r.topics) for r in predictor.analyze(texts)])


def test_the_projects_written_texts_fall_on_their_side(predictor: Predictor) -> None:
    """The 68 texts written for the story set (never fitted on): most land where labelled."""
    from training.story_set import load_written

    items = load_written()
    texts = [item.text for item in items]
    for label, min_recall, max_false in (
        ("russia_ukraine", 0.75, 3),
        ("middle_east_conflict", 0.8, 2),
    ):
        gold = np.array([item.labels[label] for item in items], dtype=bool)
        chosen = _selected(predictor, texts, label)
        assert (chosen & gold).sum() >= min_recall * gold.sum(), label
        assert (chosen & ~gold).sum() <= max_false, label


def test_a_text_naming_no_anchor_is_not_in_the_story(predictor: Predictor) -> None:
    """The anchor gate: war vocabulary without Ukraine, Kyiv, Crimea... is not the story."""
    scorer = predictor.stories
    assert scorer is not None
    text = "قالت موسكو إن المفاوضات بشأن تبادل الأسرى ووقف إطلاق النار ستستأنف الأسبوع المقبل"
    evidence = scorer.evidence([text])
    russia = scorer.labels.index("russia_ukraine")
    assert evidence[0, russia].sum() == 0.0
    assert scorer.score([text])[0, russia] == 0.0
    assert scorer.score([text + " في كييف"])[0, russia] > 0.0
