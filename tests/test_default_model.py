"""Behaviour of the shipped default model on sentences written for this test."""

from __future__ import annotations

import pytest

from serving.metadata import DEFAULT_MODEL_DIR, ModelMetadata
from serving.predictor import Predictor

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "khabar.json").is_file(), reason="no shipped model in models/default"
)


SECTIONS = ("politics", "economy", "sport", "technology", "culture")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load(DEFAULT_MODEL_DIR, threads=2)


def entities_of(predictor: Predictor, text: str) -> dict[str, str]:
    [result] = predictor.analyze([text])
    for entity in result.entities:
        assert text[entity.start : entity.end] == entity.text
    return {entity.text: entity.label for entity in result.entities}


def top_section_is(predictor: Predictor, text: str, expected: str):
    [result] = predictor.analyze([text])
    sections = {k: v for k, v in result.topic_scores.items() if k in SECTIONS}
    assert max(sections, key=sections.get) == expected
    return result


def test_shipped_model_records_file_sums_and_no_machine_path():
    text = (DEFAULT_MODEL_DIR / "khabar.json").read_text(encoding="utf-8")
    assert '"/' not in text
    metadata = ModelMetadata.load(DEFAULT_MODEL_DIR)
    assert set(metadata.file_sha256) == set(metadata.runtime_files)
    files = metadata.training["data_files"]
    assert files and all(not name.startswith("/") and len(h) == 64 for name, h in files.items())


def test_shipped_model_is_small_and_int8():
    metadata = ModelMetadata.load(DEFAULT_MODEL_DIR)
    assert metadata.default_variant == "int8"
    total = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir())
    assert total < 50 * 1024 * 1024


def test_politician_is_a_person_and_capital_a_place(predictor):
    found = entities_of(
        predictor, "وصل الرئيس الفرنسي إيمانويل ماكرون إلى القاهرة في زيارة رسمية تستغرق يومين."
    )
    assert found.get("إيمانويل ماكرون") == "PER"
    assert found.get("القاهرة") == "LOC"


def test_organisation_is_tagged(predictor):
    found = entities_of(
        predictor, "قال الأمين العام للأمم المتحدة إن المنظمة سترسل مساعدات إلى السودان."
    )
    assert found.get("السودان") == "LOC"
    assert any(label == "ORG" for label in found.values())


def test_spans_survive_diacritics_tatweel_and_bidi_marks(predictor):
    text = "\u200fاستقبل الملكُ عبدُ اللـــه الثاني في عَمّان\r\nوزيرَ الخارجية الأمريكي 😀"
    [result] = predictor.analyze([text])
    assert result.entities
    for entity in result.entities:
        assert text[entity.start : entity.end] == entity.text


def test_sports_report_gets_sport(predictor):
    text = (
        "حقق منتخب المغرب فوزا كبيرا على نظيره البرتغالي بهدف نظيف في مباراة كرة القدم، "
        "وسجل يوسف النصيري هدف المباراة الوحيد برأسية في الشوط الأول، "
        "ليتأهل الفريق إلى نصف النهائي."
    )
    result = top_section_is(predictor, text, "sport")
    assert "sport" in [label for label, _ in result.topics]


def test_economy_report_gets_economy(predictor):
    text = (
        "ارتفعت أسعار النفط في الأسواق العالمية بعد قرار منظمة أوبك خفض الإنتاج، "
        "وتراجع الدولار أمام اليورو فيما سجلت البورصات الخليجية مكاسب قوية في تعاملات اليوم."
    )
    top_section_is(predictor, text, "economy")


def test_a_text_without_arabic_gets_no_topics_and_a_warning(predictor):
    for text in ("a", "Breaking news: markets fell sharply in London today."):
        [result] = predictor.analyze([text])
        assert result.topics == []
        assert len(result.warnings) == 1 and "too little Arabic" in result.warnings[0]
        assert set(result.topic_scores) == set(predictor.metadata.topic_labels)


def test_an_arabic_article_has_no_warning(predictor):
    [result] = predictor.analyze(
        ["فاز منتخب المغرب على البرتغال بهدف نظيف في مباراة كرة القدم وتأهل إلى نصف النهائي."]
    )
    assert result.warnings == ()
    assert result.topics
