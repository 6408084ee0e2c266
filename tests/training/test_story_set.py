"""The story set joins labels to texts by hash, and keeps written texts out of test."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from serving.errors import DataError
from training.story_set import WRITTEN_CORPUS, WRITTEN_FILE, load_story_set, load_written

TEXT = "أعلن الكرملين أن الرئيس سيلتقي نظيره الأوكراني"


def _set_dir(tmp_path: Path) -> Path:
    sha = hashlib.sha256(TEXT.encode("utf-8")).hexdigest()
    row = {
        "corpus": "fignews",
        "id": "7",
        "sha256": sha,
        "russia_ukraine": 1,
        "middle_east_conflict": 0,
    }
    written = {
        "corpus": WRITTEN_CORPUS,
        "id": "ru-pos-01",
        "text": "نص كتبه المشروع",
        "russia_ukraine": 1,
        "middle_east_conflict": 0,
    }
    for split in ("dev", "test"):
        (tmp_path / f"{split}.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    (tmp_path / WRITTEN_FILE).write_text(json.dumps(written) + "\n", encoding="utf-8")
    return tmp_path


def test_written_texts_stay_out_of_both_splits(tmp_path: Path) -> None:
    set_dir = _set_dir(tmp_path)
    texts = {("fignews", "7"): [(TEXT, None)]}
    for split in ("dev", "test"):
        items = load_story_set(split, set_dir=set_dir, texts=texts)
        assert [item.corpus for item in items] == ["fignews"]
    written = load_written(set_dir / WRITTEN_FILE)
    assert [item.corpus for item in written] == [WRITTEN_CORPUS]
    assert written[0].labels == {"russia_ukraine": 1, "middle_east_conflict": 0}


def test_a_changed_text_is_an_error(tmp_path: Path) -> None:
    set_dir = _set_dir(tmp_path)
    with pytest.raises(DataError, match="differs from its sha256"):
        load_story_set("test", set_dir=set_dir, texts={("fignews", "7"): [(TEXT + ".", None)]})


def test_a_written_text_without_a_label_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / WRITTEN_FILE
    path.write_text(json.dumps({"id": "x", "text": "نص"}) + "\n", encoding="utf-8")
    missing = r"written.jsonl:1: required field 'russia_ukraine' is missing"
    with pytest.raises(DataError, match=missing):
        load_written(path)


def test_the_shipped_written_texts_load() -> None:
    items = load_written()
    assert sum(item.labels["russia_ukraine"] for item in items) >= 25
    assert len({item.id for item in items}) == len(items)
