import pytest

from serving.errors import ConfigError
from training.config import load_config, parse_overrides

MINIMAL = """
encoder: {name: some/encoder}
entities: {train: ner.txt}
"""


def write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.entities.train == (tmp_path / "ner.txt").resolve()


def test_overrides_are_applied_and_typed(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), ["training.epochs=2", "windows.stride=16"])
    assert config.training.epochs == 2
    assert config.windows.stride == 16


def test_unknown_field_names_file_and_field(tmp_path):
    path = write(tmp_path, MINIMAL + "training: {epochz: 3}\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml: training.epochz"):
        load_config(path)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "encoder: [unclosed\n"))


def test_a_head_is_required(tmp_path):
    with pytest.raises(ConfigError, match="needs 'entities', 'topics' or both"):
        load_config(write(tmp_path, "encoder: {name: x}\n"))


def test_stride_must_fit_the_window(tmp_path):
    with pytest.raises(ConfigError, match="stride"):
        load_config(write(tmp_path, MINIMAL), ["windows.max_length=16", "windows.stride=14"])


def test_unknown_topic_label_in_display_names(tmp_path):
    text = MINIMAL + "topics: {labels: [sport], display_names: {sprot: x}}\n"
    with pytest.raises(ConfigError, match="unknown topic labels"):
        load_config(write(tmp_path, text))


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["training.epochs"])


def test_shipped_default_recipe_is_valid():
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "default.yaml")
    assert config.entities.types == ["PER", "ORG", "LOC", "MISC"]
    assert config.topics.sections == ["politics", "economy", "sport", "technology", "culture"]
    assert set(config.topics.display_names) == set(config.topics.labels)


def test_overrides_never_change_the_callers_mapping():
    from training.config import validate_config

    data = {"encoder": {"name": "x"}, "entities": {"train": "a.txt"}, "training": {"epochs": 3}}
    config = validate_config(data, "stored", ["training.epochs=1"])
    assert config.training.epochs == 1
    assert data["training"]["epochs"] == 3
