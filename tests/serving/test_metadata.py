"""ModelMetadata refuses a bad enum value when the model loads, naming the field; its file is
written whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.errors import ModelLoadError
from serving.metadata import DEFAULT_MODEL_DIR, METADATA_NAME, ModelMetadata


def write_metadata(tmp_path: Path, **changes: object) -> Path:
    data = json.loads((DEFAULT_MODEL_DIR / METADATA_NAME).read_text(encoding="utf-8"))
    data.update(changes)
    (tmp_path / METADATA_NAME).write_text(json.dumps(data), encoding="utf-8")
    return tmp_path


def test_the_shipped_metadata_loads() -> None:
    metadata = ModelMetadata.load(DEFAULT_MODEL_DIR)
    assert metadata.decoder in ("viterbi", "argmax")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("decoder", "beam"),
        ("topic_windows", "max"),
        ("topic_kinds", {"politics": "genre"}),
    ],
)
def test_a_bad_enum_value_is_refused_at_load(tmp_path: Path, field: str, value: object) -> None:
    directory = write_metadata(tmp_path, **{field: value})
    with pytest.raises(ModelLoadError, match=field):
        ModelMetadata.load(directory)


def test_save_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    metadata = ModelMetadata.load(DEFAULT_MODEL_DIR)
    metadata.save(tmp_path)
    assert ModelMetadata.load(tmp_path) == metadata
    assert [p.name for p in tmp_path.iterdir()] == [METADATA_NAME]


def test_an_interrupted_save_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    import os

    metadata = ModelMetadata.load(DEFAULT_MODEL_DIR)
    metadata.save(tmp_path)
    before = (tmp_path / METADATA_NAME).read_bytes()

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        metadata.model_copy(update={"name": "changed"}).save(tmp_path)
    assert (tmp_path / METADATA_NAME).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [METADATA_NAME]
