"""Training-side commands fail with one readable line and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def khabar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "khabar_cli.app", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, needle: str):
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in result.stderr


def test_train_with_missing_config(tmp_path):
    assert_one_line_error(khabar("train", str(tmp_path / "nope.yaml"), "-q"), 2, "not found")


def test_train_with_unknown_label(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        "encoder: {name: x}\ntopics: {labels: [sport], kinds: {sprot: section}}\n",
        encoding="utf-8",
    )
    assert_one_line_error(khabar("train", str(config), "-q"), 2, "unknown topic labels")


@pytest.mark.slow
def test_train_with_malformed_corpus(tmp_path, tiny_corpora):
    from tests import tiny

    bad = tmp_path / "bad.txt"
    bad.write_text("زار O\nماكرون B-PERS\nبيروت B-DATE\n", encoding="utf-8")
    encoder = tiny.build_tiny_encoder(tmp_path / "encoder")
    config = tiny.write_config(tmp_path, encoder, dict(tiny_corpora, ner_train=bad))
    data = tiny.data_root(dict(tiny_corpora, ner_train=bad))
    result = khabar("train", str(config), "-o", str(tmp_path / "run"), "--data", str(data), "-q")
    assert_one_line_error(result, 2, "bad.txt:3: unknown tag 'B-DATE'")


def test_export_of_a_missing_run(tmp_path):
    assert_one_line_error(
        khabar("export", str(tmp_path / "run"), "-o", str(tmp_path / "m")), 3, "run"
    )


def test_evaluate_of_a_missing_model(tmp_path):
    assert_one_line_error(khabar("evaluate", str(tmp_path / "model"), "-q"), 3, "not found")


def test_export_requires_an_output_directory(tmp_path):
    result = khabar("export", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "--output" in result.stderr and "Traceback" not in result.stderr


def test_export_refuses_to_replace_a_directory_that_holds_files(tmp_path):
    output = tmp_path / "model"
    output.mkdir()
    (output / "keep.txt").write_text("mine", encoding="utf-8")
    result = khabar("export", str(tmp_path / "run"), "-o", str(output))
    assert_one_line_error(result, 2, "is not empty: choose another --output or pass --force")
    assert (output / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_refit_sections_of_a_missing_model(tmp_path):
    result = khabar("refit-sections", str(tmp_path / "model"), "-q")
    assert_one_line_error(result, 3, "not found")
