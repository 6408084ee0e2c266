"""ModelMetadata refuses a bad enum value when the model loads, naming the field."""

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
