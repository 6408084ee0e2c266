"""Topic data: labelling with masking, story rules, de-duplication, split and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from serving.errors import ConfigError, DataError
from tests import tiny
from training.baseline import tfidf_svm_baseline
from training.data.story_rules import load_story_rules
from training.data.topics import (
    TopicExample,
    deduplicate,
    load_ant,
    load_fignews,
    read_jsonl,
    split_examples,
    split_of,
)

REPO = Path(__file__).resolve().parents[2]

# The shipped recipe's label set, section map, sources and split: the one definition.
SHIPPED = tiny.shipped_topics()
TOPIC_LABELS = tuple(SHIPPED.labels)
SECTION_LABELS = tuple(SHIPPED.sections)
ANT_SECTION_MAP = dict(SHIPPED.section_map)
ANT_MIDDLE_EAST_SOURCES = tuple(SHIPPED.middle_east_sources)
DEFAULT_SPLIT = SHIPPED.split.model_dump()

# Made-up sentences, written for these tests.
WAR_TEXT = "قوات النظام السوري تقصف مواقع المعارضة المسلحة في إدلب وسقوط قتلى في اشتباكات عنيفة"
RU_TEXT = "أوكرانيا تتهم روسيا بخرق وقف إطلاق النار في دونباس والانفصاليين يردون"
SPORT_TEXT = "الفريق يفوز في المباراة النهائية ويحرز لقب الدوري للمرة الثالثة"


def _ant(id_: str, source: str, section: str, title: str, text: str) -> dict:
    return {
        "id": id_,
        "source": source,
        "section": section,
        "date": "Mon, 01 Jan 2018 00:00:00 GMT",
        "title": title,
        "abstract": "",
        "text": text,
    }


def _write(path: Path, rows: list[object]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


RULES_YAML = """
version: 1
stories:
  middle_east_conflict:
    groups:
      actor: ['النظام السوري', 'المعارضة المسلحة', 'الحوثي']
      place: ['سوري', 'ادلب', 'اليمن(?!ى)']
      war: ['قصف|تقصف', 'قتلى', 'اشتباك']
    positive_if:
      - {actor: 2, place: 1, war: 1}
      - {place: 1, war: 3}
    positive_sections: [politics]
    lead_groups: [actor, place]
    lead_chars: 200
    negative_if_no_match_in: [actor, place]
    negative_sections: [politics, economy, sport, technology, culture]
  russia_ukraine:
    groups:
      ukraine: ['اوكراني', 'دونباس|القرم']
      russia: ['روسي']
      conflict: ['وقف (?:اطلاق )?النار', 'انفصالي']
    positive_if:
      - {ukraine: 2, russia: 1, conflict: 1}
    veto: ['كاس العالم']
    negative_if_no_match_in: [ukraine]
"""


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "stories.yaml"
    path.write_text(RULES_YAML, encoding="utf-8")
    return path


@pytest.fixture
def ant_path(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "ant-000.jsonl",
        [
            _ant("SK-me-1", "skynews", "middleEast", "عنوان أول", WAR_TEXT),
            _ant("AL-int-1", "alarabia", "internationalNews", "عنوان ثان", RU_TEXT),
            _ant(
                "BB-int-1", "bbc", "internationalNews", "عنوان ثالث", "خبر عن الانتخابات في فرنسا"
            ),
            _ant("CN-sport-1", "cnn", "sport", "عنوان رابع", SPORT_TEXT),
            _ant("AL-cult-1", "alarabia", "culture", "عنوان خامس", "معرض للفنون في القاهرة"),
        ],
    )


def _load(ant_path: Path, rules_path: Path) -> dict[str, TopicExample]:
    rules = load_story_rules(rules_path, TOPIC_LABELS)
    examples = load_ant([ant_path], TOPIC_LABELS, ANT_SECTION_MAP, ANT_MIDDLE_EAST_SOURCES, rules)
    return {e.id: e for e in examples}


# --------------------------------------------------------------------------- labelling


def test_every_example_has_every_label(ant_path: Path, rules_path: Path) -> None:
    for example in _load(ant_path, rules_path).values():
        assert list(example.labels) == list(TOPIC_LABELS)


def test_sections_map_to_one_known_primary(ant_path: Path, rules_path: Path) -> None:
    examples = _load(ant_path, rules_path)
    assert examples["SK-me-1"].labels["politics"] == 1.0
    assert examples["AL-int-1"].labels["politics"] == 1.0
    assert examples["CN-sport-1"].labels["sport"] == 1.0
    for example in examples.values():
        values = [example.labels[name] for name in SECTION_LABELS]
        assert None not in values
        assert sum(values) == 1.0


def test_middle_east_is_masked_where_the_source_does_not_tell(
    ant_path: Path, rules_path: Path
) -> None:
    examples = _load(ant_path, rules_path)
    assert examples["SK-me-1"].labels["middle_east"] == 1.0  # skynews middleEast
    assert examples["BB-int-1"].labels["middle_east"] == 0.0  # bbc internationalNews
    assert examples["AL-int-1"].labels["middle_east"] is None  # alarabia: no such section
    assert examples["CN-sport-1"].labels["middle_east"] is None  # sport may be about it
    assert examples["AL-cult-1"].labels["middle_east"] is None


def test_model_text_is_title_then_body(ant_path: Path, rules_path: Path) -> None:
    example = _load(ant_path, rules_path)["CN-sport-1"]
    assert example.text == "عنوان رابع\n" + SPORT_TEXT
    only_body = load_ant(
        [ant_path],
        TOPIC_LABELS,
        ANT_SECTION_MAP,
        ANT_MIDDLE_EAST_SOURCES,
        None,
        text_fields=("text",),
    )
    assert only_body[3].text == SPORT_TEXT
    assert all(only_body[3].labels[name] is None for name in TOPIC_LABELS[6:])


def test_fignews_is_positive_for_the_war_and_unknown_otherwise(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "posts.jsonl",
        [
            {
                "id": "1",
                "source_language": "Arabic",
                "text": "منشور عن الحرب في غزة",
                "label_counts": {},
            }
        ],
    )
    (post,) = load_fignews(path, TOPIC_LABELS)
    assert post.source == "fignews"
    assert post.labels["middle_east_conflict"] == 1.0
    assert post.labels["middle_east"] == 1.0
    assert all(post.labels[name] is None for name in SECTION_LABELS + ("russia_ukraine",))


# --------------------------------------------------------------------------- story rules


def test_story_labels_in_loaded_ant(ant_path: Path, rules_path: Path) -> None:
    examples = _load(ant_path, rules_path)
    assert examples["SK-me-1"].labels["middle_east_conflict"] == 1.0
    assert examples["SK-me-1"].labels["russia_ukraine"] == 0.0
    assert examples["AL-int-1"].labels["russia_ukraine"] == 1.0
    assert examples["CN-sport-1"].labels["middle_east_conflict"] == 0.0


def test_story_rules_positive_negative_unsure(rules_path: Path) -> None:
    rules = load_story_rules(rules_path, TOPIC_LABELS)
    assert rules.labels == ("middle_east_conflict", "russia_ukraine")
    # Strong evidence: two actors, a place and a war term.
    assert rules.apply(WAR_TEXT, "politics")["middle_east_conflict"] == 1.0
    # Hamza spellings fold: "إدلب" matches the pattern "ادلب".
    assert rules.apply("قصف وقتلى واشتباكات في إدلب", "politics")["middle_east_conflict"] == 1.0
    # Silence in a section where silence counts: negative.
    assert rules.apply(SPORT_TEXT, "sport") == {"middle_east_conflict": 0.0, "russia_ukraine": 0.0}
    # A passing mention only: unknown, not negative.
    weak = "وزير الخارجية يزور اليمن لبحث التعاون التجاري"
    assert rules.apply(weak, "politics")["middle_east_conflict"] is None
    # Strong evidence outside positive_sections: unknown.
    assert rules.apply(WAR_TEXT, "sport")["middle_east_conflict"] is None
    # Evidence only after the lead: unknown.
    late = "تقرير مطول عن الاقتصاد العالمي " + "والأسواق " * 40 + WAR_TEXT
    assert rules.apply(late, "politics")["middle_east_conflict"] is None
    # "اليمنى" (right side) is not Yemen.
    assert rules.apply("سدد الكرة بالقدم اليمنى", "sport")["middle_east_conflict"] == 0.0


def test_story_rules_russia_ukraine_and_veto(rules_path: Path) -> None:
    rules = load_story_rules(rules_path, TOPIC_LABELS)
    assert rules.apply(RU_TEXT, "politics")["russia_ukraine"] == 1.0
    assert rules.apply(RU_TEXT + " قبل كأس العالم", "politics")["russia_ukraine"] is None
    assert rules.apply("روسيا تستضيف القمة", "politics")["russia_ukraine"] == 0.0


def test_project_story_rules_load_and_label(tmp_path: Path) -> None:
    rules = load_story_rules(REPO / "configs" / "stories.yaml", TOPIC_LABELS)
    assert set(rules.labels) == {"middle_east_conflict", "russia_ukraine"}
    assert rules.apply(WAR_TEXT, "politics")["middle_east_conflict"] == 1.0
    assert rules.apply(RU_TEXT, "politics")["russia_ukraine"] == 1.0
    assert rules.apply(SPORT_TEXT, "sport") == {"middle_east_conflict": 0.0, "russia_ukraine": 0.0}


def test_rule_check_record_is_consistent() -> None:
    check = yaml.safe_load((REPO / "configs" / "stories_check.yaml").read_text(encoding="utf-8"))
    for label in ("middle_east_conflict", "russia_ukraine"):
        verdicts = check["verdicts"][f"{label}_positives"]
        assert len({v["id"] for v in verdicts}) == len(verdicts)
        correct = sum(v["ok"] for v in verdicts)
        assert check["precision"][label]["correct"] == correct
        assert check["precision"][label]["precision"] == pytest.approx(correct / len(verdicts))


# --------------------------------------------------------------------------- dedupe, split


def _ex(id_: str, text: str, dedup_text: str | None = None) -> TopicExample:
    return TopicExample(
        id=id_, text=text, source="test", labels=dict.fromkeys(TOPIC_LABELS), dedup_text=dedup_text
    )


def test_deduplicate_keeps_first_and_ignores_whitespace() -> None:
    examples = [_ex("a", "نص  واحد\nهنا"), _ex("b", "نص آخر"), _ex("c", " نص واحد هنا ")]
    assert [e.id for e in deduplicate(examples)] == ["a", "b"]


def test_deduplicate_by_body_when_headlines_differ(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ant.jsonl",
        [
            _ant("x1", "skynews", "economy", "عنوان قديم", "نفس المقال"),
            _ant("x2", "skynews", "economy", "عنوان معدل", "نفس  المقال"),
        ],
    )
    examples = load_ant([path], TOPIC_LABELS, ANT_SECTION_MAP, ANT_MIDDLE_EAST_SOURCES, None)
    assert [e.id for e in deduplicate(examples)] == ["x1"]


def test_split_is_deterministic_disjoint_and_roughly_proportional() -> None:
    examples = [_ex(str(i), f"نص رقم {i}") for i in range(2000)]
    first = split_examples(examples, DEFAULT_SPLIT)
    second = split_examples(list(reversed(examples)), DEFAULT_SPLIT)
    assert list(first) == ["train", "dev", "test"]
    for name in first:
        assert {e.id for e in first[name]} == {e.id for e in second[name]}
    ids = [{e.id for e in items} for items in first.values()]
    assert ids[0].isdisjoint(ids[1]) and ids[0].isdisjoint(ids[2]) and ids[1].isdisjoint(ids[2])
    assert sum(len(s) for s in ids) == 2000
    assert 1500 < len(ids[0]) < 1700 and 120 < len(ids[1]) < 280


def test_split_of_ignores_whitespace_and_puts_copies_together() -> None:
    assert split_of("نص  واحد\n", DEFAULT_SPLIT) == split_of("نص واحد", DEFAULT_SPLIT)
    assert split_of("أي نص", {"train": 1.0}) == "train"
    copies = [
        _ex("a", "عنوان\nمتن", dedup_text="متن"),
        _ex("b", "عنوان آخر\nمتن", dedup_text="متن"),
    ]
    splits = split_examples(copies, DEFAULT_SPLIT)
    assert sorted(len(items) for items in splits.values()) == [0, 0, 2]


def test_bad_fractions_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        split_of("نص", {"train": 0.8, "test": 0.1})
    with pytest.raises(ConfigError, match="outside"):
        split_of("نص", {"train": 1.2, "test": -0.2})


# --------------------------------------------------------------------------- errors


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    good = json.dumps(_ant("a", "bbc", "sport", "عنوان", SPORT_TEXT), ensure_ascii=False)
    path = _write(tmp_path / "bad.jsonl", [good, "", '{"id": "b", "text": '])
    with pytest.raises(DataError, match=r"bad\.jsonl:3: invalid JSON"):
        list(read_jsonl(path, ("text",)))


def test_missing_text_field_names_file_and_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ant.jsonl",
        [
            _ant("a", "bbc", "sport", "عنوان", SPORT_TEXT),
            {"id": "b", "source": "bbc", "section": "sport", "title": "ع"},
        ],
    )
    with pytest.raises(DataError, match=r"ant\.jsonl:2: text field 'text' is missing"):
        load_ant([path], TOPIC_LABELS, ANT_SECTION_MAP, ANT_MIDDLE_EAST_SOURCES, None)
    empty = _write(tmp_path / "empty.jsonl", [{"id": "1", "text": "   "}])
    with pytest.raises(DataError, match=r"empty\.jsonl:1: text field 'text' is empty"):
        load_fignews(empty, TOPIC_LABELS)


def test_unknown_section_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "ant.jsonl", [_ant("a", "bbc", "weather", "عنوان", SPORT_TEXT)])
    with pytest.raises(DataError, match=r"ant\.jsonl:1: unknown section 'weather'"):
        load_ant([path], TOPIC_LABELS, ANT_SECTION_MAP, ANT_MIDDLE_EAST_SOURCES, None)
    with pytest.raises(DataError, match="nowhere.jsonl"):
        load_fignews(tmp_path / "nowhere.jsonl", TOPIC_LABELS)


def test_unknown_labels_are_config_errors(tmp_path: Path, rules_path: Path, ant_path: Path) -> None:
    with pytest.raises(ConfigError, match="'weather'"):
        load_ant([ant_path], TOPIC_LABELS, {**ANT_SECTION_MAP, "sport": "weather"}, (), None)
    with pytest.raises(ConfigError, match="'middle_east_conflict'"):
        load_story_rules(
            rules_path, [name for name in TOPIC_LABELS if name != "middle_east_conflict"]
        )
    with pytest.raises(ConfigError, match="'gaza'"):
        load_fignews(ant_path, TOPIC_LABELS, positive_labels=("gaza",))
    bad_group = tmp_path / "bad.yaml"
    bad_group.write_text(RULES_YAML.replace("{place: 1, war: 3}", "{places: 1}"), encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown group 'places'"):
        load_story_rules(bad_group)
    with pytest.raises(ConfigError, match="not found"):
        load_story_rules(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- baseline


@pytest.mark.slow
def test_baseline_runs_on_a_tiny_corpus() -> None:
    words = {
        "politics": "الحكومة البرلمان الوزير الانتخابات",
        "economy": "الأسواق النفط الأسعار البنك",
        "sport": "المباراة الفريق الدوري الهدف",
        "technology": "الهاتف التطبيق الشركة الإنترنت",
        "culture": "الفيلم المهرجان الفنان الرواية",
    }
    examples = []
    for index in range(60):
        section = SECTION_LABELS[index % 5]
        labels: dict[str, float | None] = dict.fromkeys(TOPIC_LABELS)
        labels.update({name: float(name == section) for name in SECTION_LABELS})
        if section == "politics":
            labels["middle_east"] = float(index % 2)
        region = " سوريا لبنان" if labels["middle_east"] == 1.0 else " فرنسا ألمانيا"
        examples.append(
            TopicExample(str(index), f"{words[section]}{region} {index}", "test", labels)
        )
    result = tfidf_svm_baseline(examples[:45], examples[45:], SECTION_LABELS, min_df=1)
    assert result["section"]["accuracy"] == 1.0
    assert result["section"]["n_test"] == 15
    assert result["middle_east"]["n_test"] == 3
    with pytest.raises(ConfigError, match="middle_east"):
        tfidf_svm_baseline(examples[:45], examples[46:47], SECTION_LABELS, min_df=1)
