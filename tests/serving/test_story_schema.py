"""Story definition files: valid ones load, bad ones fail with the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from serving.errors import ConfigError
from serving.stories.schema import DEFAULT_STORIES_DIR, load_definition, load_definitions
from serving.stories.terms import TermMatcher, fold

VALID = {
    "name": "sudan_war",
    "display_names": {"ar": "الحرب في السودان", "en": "War in Sudan"},
    "description": {"ar": "الحرب بين الجيش السوداني وقوات الدعم السريع منذ 2023"},
    "terms": {"anchors": [{"name": "Sudan", "variants": ["السودان"]}]},
    "examples": {"positive": ["اندلعت معارك في الخرطوم"]},
}


def _write(tmp_path: Path, data: object, name: str = "sudan_war") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_shipped_definitions_load() -> None:
    names = {story.name for story in load_definitions(DEFAULT_STORIES_DIR)}
    assert {"russia_ukraine", "middle_east_conflict"} <= names


def test_valid_definition_loads(tmp_path: Path) -> None:
    story = load_definition(_write(tmp_path, VALID))
    assert story.name == "sudan_war"
    assert story.combiner is None  # the documented default applies


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"display_names": {"ar": "السودان"}}, "display_names.en"),
        ({"description": {"ar": ""}}, "description.ar"),
        ({"examples": {"positive": []}}, "examples.positive"),
        ({"terms": {"anchors": [{"name": "x", "variants": [" "]}]}}, "terms.anchors.0.variants"),
        ({"colour": "red"}, "colour"),
        ({"combiner": {"bias": 0, "weights": {"vibes": 1.0}}}, "combiner.weights"),
        ({"combiner": {"bias": 0, "weights": {}, "threshold": 1.5}}, "combiner.threshold"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, change: dict, field: str) -> None:
    path = _write(tmp_path, VALID | change)
    with pytest.raises(ConfigError) as error:
        load_definition(path)
    message = str(error.value)
    assert str(path) in message and f"field {field}" in message
    assert "\n" not in message


def test_name_must_match_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="field name: 'sudan_war' must match"):
        load_definition(_write(tmp_path, VALID, name="sudan"))


def test_invalid_yaml_and_missing_dir(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_definition(path)
    with pytest.raises(ConfigError, match="not found"):
        load_definitions(tmp_path / "nope")


def test_later_definition_replaces_earlier(tmp_path: Path) -> None:
    other = tmp_path / "mine"
    other.mkdir()
    _write(other, VALID | {"name": "russia_ukraine"}, name="russia_ukraine")
    stories = {s.name: s for s in load_definitions(DEFAULT_STORIES_DIR, other)}
    assert stories["russia_ukraine"].display_names.en == "War in Sudan"


def test_terms_fold_and_fence_short_variants() -> None:
    from serving.stories.schema import Term

    matcher = TermMatcher(
        [Term(name="Crimea", variants=["القرم"]), Term(name="Ukraine", variants=["أوكراني"])]
    )
    assert matcher.found(fold("وصل إلى شبه جزيرة القرم وبالقرم")) == ["Crimea"]
    assert matcher.found(fold("ارتدت فستانا قرمزيا")) == []
    assert matcher.found(fold("قالت الحكومة الأوكرانية")) == ["Ukraine"]
    assert matcher.count_in([fold("اوكرانيا"), fold("كييف")]) == 1
