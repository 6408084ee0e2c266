from pathlib import Path

import pytest

from serving.data_root import DATA_ENV, DEFAULT_DATA_ROOT
from serving.errors import ConfigError
from training.config import (
    load_config,
    parse_overrides,
    portable_training_record,
    validate_config,
)

MINIMAL = """
encoder: {name: some/encoder}
entities: {train: ner.txt}
"""


def write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_corpus_paths_are_names_under_the_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    config = load_config(write(tmp_path, MINIMAL + "data_root: corpora\n"))
    assert config.entities.train == Path("ner.txt")
    assert config.root == (tmp_path / "corpora").resolve()
    # The root is one machine's directory: the recorded config never holds it.
    assert "data_root" not in config.model_dump(mode="json")
    assert config.model_dump(mode="json")["entities"]["train"] == "ner.txt"


def test_data_root_flag_beats_environment_beats_recipe_beats_default(tmp_path, monkeypatch):
    path = write(tmp_path, MINIMAL + "data_root: from-recipe\n")
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert load_config(path).root == (tmp_path / "from-recipe").resolve()
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "from-env"))
    assert load_config(path).root == tmp_path / "from-env"
    assert load_config(path, data_root=tmp_path / "flag").root == tmp_path / "flag"
    monkeypatch.delenv(DATA_ENV)
    assert load_config(write(tmp_path, MINIMAL)).root == DEFAULT_DATA_ROOT


def test_absolute_corpus_paths_become_names_or_are_refused(tmp_path):
    data = {"encoder": {"name": "x"}, "entities": {"train": str(tmp_path / "ner" / "a.txt")}}
    config = validate_config(data, "stored", data_root=tmp_path)
    assert config.entities.train == Path("ner/a.txt")
    with pytest.raises(ConfigError, match="not under the data root"):
        validate_config(data, "stored", data_root=tmp_path / "elsewhere")


def test_records_of_older_runs_lose_their_machine_paths(tmp_path):
    root = tmp_path / "data"
    training = {
        "config": {
            "encoder": {"name": "x"},
            "entities": {"train": str(root / "ner/train.txt")},
            "topics": {
                "labels": ["sport"],
                "ant_paths": [str(root / "ant/a-000.jsonl")],
                "story_rules": "/somewhere/configs/stories.yaml",
            },
            "card_notes": "/somewhere/configs/notes.md",
        },
        "data_files": {str(root / "ner/train.txt"): "ab", "/somewhere/configs/stories.yaml": "cd"},
    }
    portable = portable_training_record(training, root)
    assert portable["config"]["entities"]["train"] == "ner/train.txt"
    assert portable["config"]["topics"]["ant_paths"] == ["ant/a-000.jsonl"]
    assert portable["config"]["topics"]["story_rules"] == "stories.yaml"
    assert portable["config"]["card_notes"] == "notes.md"
    assert portable["data_files"] == {"ner/train.txt": "ab", "stories.yaml": "cd"}
    assert training["config"]["entities"]["train"].startswith("/")  # the input is untouched


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


def test_shipped_default_recipe_is_valid_without_its_data(tmp_path):
    # Validating a recipe never reads its corpora: an empty data root is fine.
    config = load_config(
        Path(__file__).resolve().parents[2] / "configs" / "default.yaml", data_root=tmp_path
    )
    assert config.entities.train == Path("ner/anercorp/train.txt")
    assert config.entities.types == ["PER", "ORG", "LOC", "MISC"]
    assert config.topics.sections == ["politics", "economy", "sport", "technology", "culture"]
    assert set(config.topics.display_names) == set(config.topics.labels)


def test_overrides_never_change_the_callers_mapping():
    data = {"encoder": {"name": "x"}, "entities": {"train": "a.txt"}, "training": {"epochs": 3}}
    config = validate_config(data, "stored", ["training.epochs=1"])
    assert config.training.epochs == 1
    assert data["training"]["epochs"] == 3
