"""``khabar export`` in one pass: every dev-set choice on predictors held in memory,
``khabar.json`` and the card written once into a staging directory renamed into place, and
no second vocabulary trim of a run that training trimmed already."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.metadata import METADATA_NAME, ModelMetadata
from serving.predictor import Predictor
from training.config import ExportConfig


@pytest.fixture
def counted_writes(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Path]]:
    """Directories that ``khabar.json`` and the card were written into, in order."""
    import training.workflows

    writes: dict[str, list[Path]] = {"metadata": [], "card": []}
    save, write_card = ModelMetadata.save, training.workflows.write_card

    def counting_save(self: ModelMetadata, directory: Path) -> Path:
        writes["metadata"].append(directory)
        return save(self, directory)

    def counting_card(directory: Path, *args: object) -> Path:
        writes["card"].append(directory)
        return write_card(directory, *args)

    monkeypatch.setattr(ModelMetadata, "save", counting_save)
    monkeypatch.setattr(training.workflows, "write_card", counting_card)
    return writes


def test_export_writes_khabar_json_and_the_card_once_and_loads_nothing_back(
    tiny_run, tiny_data_root, tmp_path, monkeypatch, counted_writes
):
    import training.dev_choices
    from training.workflows import run_export

    def no_reload(*args: object, **kwargs: object) -> None:
        raise AssertionError("export loaded a predictor from disk")

    sessions: list[str] = []
    session_class = training.dev_choices.OnnxSession

    def counting_session(path: Path, threads: int | None = None):
        sessions.append(path.name)
        return session_class(path, threads=threads)

    monkeypatch.setattr(Predictor, "load", no_reload)
    monkeypatch.setattr(training.dev_choices, "OnnxSession", counting_session)
    output = tmp_path / "models" / "tiny"
    metadata = run_export(tiny_run, output, [], threads=1, data_root=tiny_data_root)

    assert len(counted_writes["metadata"]) == 1 and len(counted_writes["card"]) == 1
    assert counted_writes["metadata"][0] != output  # written in staging, then renamed
    assert sorted(sessions) == ["model.int8.onnx", "model.onnx"]  # one per variant
    assert [p.name for p in output.parent.iterdir()] == ["tiny"]  # no staging left
    stored = ModelMetadata.load(output).model_dump(mode="json")
    assert stored == metadata.model_dump(mode="json")
    assert metadata.decoder in ("viterbi", "argmax") and metadata.thresholds
    assert set(metadata.metrics["dev"]) == {"int8", "fp32"}
    assert "dev_decoder_f1" in metadata.metrics and "dev_topic_windows" in metadata.metrics
    assert set(metadata.file_sha256) == set(metadata.runtime_files)


def test_an_export_that_fails_midway_leaves_no_directory_and_no_staging(
    tiny_run, tiny_data_root, tmp_path, monkeypatch, counted_writes
):
    import training.workflows
    from training.workflows import run_export

    def fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("stopped after the ONNX files were written")

    monkeypatch.setattr(training.workflows, "choose_on_dev", fails)
    output = tmp_path / "models" / "tiny"
    with pytest.raises(RuntimeError, match="stopped"):
        run_export(tiny_run, output, [], threads=1, data_root=tiny_data_root)
    assert not output.exists()
    assert list(output.parent.iterdir()) == []
    assert counted_writes["metadata"] == []

    # --force replaces a model only once the new one is complete.
    output.mkdir()
    (output / "notes.txt").write_text("kept", encoding="utf-8")
    with pytest.raises(RuntimeError, match="stopped"):
        run_export(tiny_run, output, [], threads=1, data_root=tiny_data_root, force=True)
    assert [p.name for p in output.iterdir()] == ["notes.txt"]
    assert [p.name for p in output.parent.iterdir()] == ["tiny"]


def test_a_run_trimmed_in_training_is_not_trimmed_again(tiny_run, tmp_path, monkeypatch):
    import training.export
    from training.export import export_run

    def second_trim(*args: object, **kwargs: object) -> None:
        raise AssertionError("the vocabulary was trimmed a second time")

    monkeypatch.setattr(training.export, "trim_model", second_trim)
    run = json.loads((tiny_run / "run.json").read_text(encoding="utf-8"))
    trimmed = run["metadata"]["base_encoder"]["vocabulary"]
    assert trimmed["trimmed"]
    metadata, report = export_run(tiny_run, tmp_path / "m", ExportConfig(quantize=False))
    assert report.vocab == trimmed == metadata.metrics["export"]["vocab"]
    assert (tmp_path / "m" / METADATA_NAME).is_file()
    assert (tmp_path / "m" / "tokenizer.json").read_bytes() == (
        tiny_run / "tokenizer.json"
    ).read_bytes()
