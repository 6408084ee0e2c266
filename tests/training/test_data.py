"""The data root and ``khabar data check``: names under a root, recorded sums, the CI rule."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serving.errors import DataError
from serving.metadata import DEFAULT_MODEL_DIR, ModelMetadata
from tests import tiny
from tests.corpora import require_corpora
from training.config import load_config
from training.data.corpora import data_files
from training.workflows import run_data_check

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CORPORA = (
    "ner/anercorp/train.txt",
    "ner/anercorp/test.txt",
    "topics/ant-v2.1/ant-v2.1-000.jsonl",
    "topics/fignews-2024/gaza-war-posts.jsonl",
)


def copy_corpora(corpora: dict[str, Path], data: Path) -> dict[str, Path]:
    data.mkdir()
    return {key: Path(shutil.copy(path, data / path.name)) for key, path in corpora.items()}


def test_exported_model_records_corpora_by_name_with_sha256(tiny_model_dir, tiny_corpora):
    recorded = ModelMetadata.load(tiny_model_dir).training["data_files"]
    # Training and dev files; the test file joins when test figures are recorded.
    assert {"ner_train.txt", "ant.jsonl", "fignews.jsonl", "stories.yaml"} <= set(recorded)
    assert all(len(digest) == 64 for digest in recorded.values())
    config = ModelMetadata.load(tiny_model_dir).training["config"]
    assert config["entities"]["train"] == "ner_train.txt"
    assert config["topics"]["story_rules"] == "stories.yaml"
    assert "data_root" not in config


def test_a_missing_corpus_names_the_file_and_the_data_root(tmp_path, tiny_corpora):
    path = tiny.write_config(tmp_path, tmp_path / "encoder", tiny_corpora)
    config = load_config(path, data_root=tiny.data_root(tiny_corpora))
    assert set(data_files(config)) == {path.name for path in tiny_corpora.values()}
    elsewhere = load_config(tmp_path / "tiny.yaml", data_root=tmp_path / "empty")
    with pytest.raises(DataError, match=r"ner_train.txt: not found under the data root .*empty"):
        data_files(elsewhere)


def test_data_check_lists_found_changed_and_missing_files(tmp_path, tiny_corpora, tiny_model_dir):
    data = tmp_path / "data"
    copies = copy_corpora(tiny_corpora, data)
    config = tiny.write_config(tmp_path, tmp_path / "encoder", copies)
    report, complete = run_data_check(config, tiny_model_dir, data)
    assert complete, report
    assert f"data root: {data.resolve()}" in report

    with copies["ant"].open("a", encoding="utf-8") as handle:
        handle.write("\n")
    copies["ner_test"].unlink()
    report, complete = run_data_check(config, tiny_model_dir, data)
    assert not complete
    expected = ModelMetadata.load(tiny_model_dir).training["data_files"]
    rows = {line.split()[1]: line.split()[0] for line in report.splitlines() if "  sha256 " in line}
    assert rows == {
        "ner_train.txt": "ok",
        "ner_test.txt": "missing",
        "ant.jsonl": "differs",
        "fignews.jsonl": "ok",
    }
    assert f"ant.jsonl  sha256 {expected['ant.jsonl']}" in report


def test_data_check_command_prints_the_report_and_fails_in_one_line(
    tmp_path, tiny_corpora, tiny_model_dir
):
    config = tiny.write_config(tmp_path, tmp_path / "encoder", tiny_corpora)
    args = ["data", "check", "--config", str(config), "--model", str(tiny_model_dir)]
    result = subprocess.run(
        [sys.executable, "-m", "khabar_cli.app", *args, "--data", str(tmp_path / "none")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "missing    ner_train.txt" in result.stdout
    assert "0 of 4 files found" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_default_recipe_finds_every_corpus_the_shipped_model_was_trained_on():
    root = require_corpora(*DEFAULT_CORPORA)
    report, complete = run_data_check(None, DEFAULT_MODEL_DIR, root)
    assert complete, report
    for source in ("camel.abudhabi.nyu.edu/anercorp", "ANT", "CAMeL-Lab/FIGNEWS-2024"):
        assert source in report


@pytest.mark.slow
def test_in_ci_a_skip_for_missing_corpora_is_an_error(tmp_path):
    name = test_default_recipe_finds_every_corpus_the_shipped_model_was_trained_on.__name__
    test = f"{Path(__file__).relative_to(REPO)}::{name}"
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["KHABAR_DATA"] = str(tmp_path)  # an empty data root

    def pytest_run(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test],
            cwd=REPO,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )

    local = pytest_run({})
    assert local.returncode == 0, local.stdout
    assert (
        "SKIPPED [1]" in local.stdout
        and "ANERcorp (CAMeL Lab release) (https://camel" in local.stdout
    )
    ci = pytest_run({"CI": "true"})
    assert ci.returncode == 1, ci.stdout
    assert "CI=true, so this skip is an error: needs the corpora" in ci.stdout
