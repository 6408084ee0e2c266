"""A staged directory replaces its target only when it is complete; a failure changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.staging import staged_directory


def _tree(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.iterdir())}


def test_a_new_target_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "out" / "model"
    with staged_directory(target) as staging:
        assert staging.parent == target.parent and not target.exists()
        (staging / "a.txt").write_text("a", encoding="utf-8")
    assert _tree(target) == {"a.txt": "a"}
    assert [p.name for p in target.parent.iterdir()] == ["model"]


def test_an_existing_target_is_replaced_only_at_the_end(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old", encoding="utf-8")
    with staged_directory(target) as staging:
        (staging / "new.txt").write_text("new", encoding="utf-8")
        assert _tree(target) == {"old.txt": "old"}
    assert _tree(target) == {"new.txt": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failure_leaves_the_target_as_it_was_and_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError, match="midway"), staged_directory(target) as staging:
        (staging / "new.txt").write_text("new", encoding="utf-8")
        raise RuntimeError("midway")
    assert _tree(target) == {"old.txt": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    with pytest.raises(RuntimeError), staged_directory(tmp_path / "fresh"):
        raise RuntimeError("midway")
    assert not (tmp_path / "fresh").exists()
