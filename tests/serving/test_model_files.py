"""Model files are checked against the sha256 sums ``khabar.json`` records, at every load."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serving.errors import ModelLoadError
from serving.metadata import METADATA_NAME, ModelMetadata, sha256_of_file
from serving.predictor import Predictor

REPO = Path(__file__).resolve().parents[2]
TEXT = "زار الرئيس ماكرون بيروت"

pytestmark = pytest.mark.slow


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_export_records_the_sha256_of_every_runtime_file(tiny_model_dir: Path) -> None:
    metadata = ModelMetadata.load(tiny_model_dir)
    assert set(metadata.file_sha256) == set(metadata.runtime_files)
    for name, digest in metadata.file_sha256.items():
        assert sha256_of_file(tiny_model_dir / name) == digest


def test_one_changed_byte_in_the_onnx_file_is_refused_naming_it(model_copy: Path) -> None:
    flip_one_byte(model_copy / "model.int8.onnx")
    with pytest.raises(ModelLoadError, match=r"model.int8.onnx: corrupt or changed") as caught:
        Predictor.load(model_copy, threads=1)
    assert "\n" not in str(caught.value)
    # The other variant is intact and still loads.
    assert Predictor.load(model_copy, threads=1, variant="fp32").analyze([TEXT])


def test_a_truncated_tokenizer_is_refused(model_copy: Path) -> None:
    path = model_copy / "tokenizer.json"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match=r"tokenizer.json: corrupt or changed"):
        Predictor.load(model_copy, threads=1)


def test_a_file_without_a_recorded_sum_is_refused(model_copy: Path) -> None:
    record = json.loads((model_copy / METADATA_NAME).read_text(encoding="utf-8"))
    del record["file_sha256"]["tokenizer.json"]
    (model_copy / METADATA_NAME).write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"tokenizer.json: no sha256 recorded"):
        Predictor.load(model_copy, threads=1)


def test_a_model_that_records_no_sums_loads_with_a_warning(
    model_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = json.loads((model_copy / METADATA_NAME).read_text(encoding="utf-8"))
    del record["file_sha256"]
    (model_copy / METADATA_NAME).write_text(json.dumps(record), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="serving.predictor"):
        assert Predictor.load(model_copy, threads=1).analyze([TEXT])
    assert "loaded unchecked" in caplog.text


def test_the_cli_refuses_a_corrupt_model_in_one_line_with_exit_3(model_copy: Path) -> None:
    flip_one_byte(model_copy / "model.int8.onnx")
    result = subprocess.run(
        [sys.executable, "-m", "khabar_cli.app", "predict", "--model", str(model_copy)]
        + ["--text", TEXT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "model.int8.onnx: corrupt or changed" in lines[0]


def test_the_api_stays_unready_with_a_corrupt_model(model_copy: Path) -> None:
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from serving.api.settings import ServerSettings

    flip_one_byte(model_copy / "model.int8.onnx")
    with TestClient(create_app(ServerSettings(model_dir=model_copy, threads=1))) as client:
        body: dict[str, str] = {}
        for _ in range(500):
            response = client.get("/v1/ready")
            assert response.status_code == 503
            body = response.json()
            if "corrupt" in body["error"]:
                break
            time.sleep(0.01)
        assert body["error_type"] == "model_load_error"
        assert "model.int8.onnx: corrupt or changed" in body["error"]
