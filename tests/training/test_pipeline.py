"""Train -> export -> evaluate on the tiny corpora with a random 2-layer BERT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from serving.errors import ParityError
from serving.metadata import ModelMetadata
from serving.predictor import Predictor
from tests import tiny
from training.config import ExportConfig
from training.export import export_run, load_run
from training.torch_session import TorchSession

TEXTS = ["زار الرئيس ماكرون بيروت .", "وصل الوفد إلى القاهرة صباح اليوم . " * 8, ""]


def test_training_run_records_config_data_and_history(tiny_run):
    run = json.loads((tiny_run / "run.json").read_text(encoding="utf-8"))
    assert run["config"]["name"] == "khabar-tiny"
    assert all(len(digest) == 64 for digest in run["data_files"].values())
    assert run["history"] and "dev" in run["history"][-1]
    assert run["versions"]["torch"]
    losses = [h["train_loss"]["entity"] for h in run["history"]]
    assert losses[-1] < losses[0]


def test_exported_model_is_self_describing(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    expected = {"khabar.json", "tokenizer.json", "MODEL_CARD.md", "model.onnx", "model.int8.onnx"}
    assert expected <= names
    metadata = ModelMetadata.load(tiny_model_dir)
    export = metadata.metrics["export"]
    assert max(export["parity_max_abs_diff"].values()) < 1e-3
    assert export["vocab"]["trimmed"] and export["vocab"]["corpus_tokens_checked_one_to_one"] > 0
    assert set(metadata.metrics["dev"]) == {"int8", "fp32"}
    assert set(metadata.thresholds) == set(metadata.topic_labels)
    assert all(0 < t < 1 for t in metadata.thresholds.values())
    card = (tiny_model_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "ANERcorp" in card and "int8" in card


def test_export_records_the_settings_it_ran_with_overrides_included(
    tiny_run, tiny_data_root, tmp_path
):
    from training.workflows import run_export

    metadata = run_export(
        tiny_run, tmp_path / "pc", ["export.per_channel=true"], threads=1, data_root=tiny_data_root
    )
    assert metadata.training["export"]["per_channel"] is True
    assert metadata.training["config"]["export"].get("per_channel") is not True  # the run's own
    card = (tmp_path / "pc" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "per-channel weights" in card


def test_onnx_fp32_matches_torch_through_the_same_predictor(tiny_run, tmp_path):
    output = tmp_path / "untrimmed"
    export_run(tiny_run, output, ExportConfig(trim_vocab=False, quantize=False))
    onnx = Predictor.load(output, threads=1, variant="fp32")
    _, model = load_run(tiny_run)
    torch_predictor = Predictor(onnx.metadata, onnx.tokenizer, TorchSession(model, threads=1))
    for a, b in zip(onnx.analyze(TEXTS), torch_predictor.analyze(TEXTS), strict=True):
        assert [(e.start, e.end, e.label) for e in a.entities] == [
            (e.start, e.end, e.label) for e in b.entities
        ]
        np.testing.assert_allclose(
            list(a.topic_scores.values()), list(b.topic_scores.values()), atol=1e-4
        )


def test_a_parity_failure_is_its_own_error_and_leaves_no_directory(tiny_run, tmp_path, monkeypatch):
    import training.export

    monkeypatch.setattr(training.export, "parity", lambda *a, **k: {"entity_logits": 0.5})
    output = tmp_path / "failed"
    with pytest.raises(ParityError, match="differs from torch"):
        export_run(tiny_run, output, ExportConfig(trim_vocab=False, quantize=False))
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left


def test_evaluate_reports_entity_and_topic_scores(tiny_model_dir, tiny_data_root):
    from training.workflows import run_evaluate

    report = run_evaluate(
        tiny_model_dir, None, [], split="test", record=True, threads=1, data_root=tiny_data_root
    )
    entity, topic = report["entity"], report["topic"]
    assert 0 <= entity["micro_f1"] <= 100
    assert {"PER", "LOC", "ORG"} <= set(entity["per_type"])
    # The headline is the document-level figure; every packing size is reported.
    assert entity["sentences_per_document"] == 20
    assert set(entity["by_document"]) == {"1", "5", "20"}
    assert entity["micro_f1"] == entity["by_document"]["20"]["micro_f1"]
    assert 0 <= topic["section_accuracy"] <= 100
    assert set(topic["per_label"]) == set(ModelMetadata.load(tiny_model_dir).topic_labels)
    stored = ModelMetadata.load(tiny_model_dir).metrics["test"]["int8"]
    assert stored["entity"]["micro_f1"] == entity["micro_f1"]


def test_evaluate_scores_the_whole_dev_split_whatever_the_training_cap(
    tiny_model_dir, tiny_data_root
):
    from training.workflows import run_evaluate

    capped = ["topics.max_dev_examples=2"]
    report = run_evaluate(
        tiny_model_dir, None, capped, split="dev", threads=1, data_root=tiny_data_root
    )
    stored = ModelMetadata.load(tiny_model_dir).metrics["dev"]["int8"]["topic"]
    # Export scored its choices on the whole dev split; evaluate scores the same texts.
    assert report["topic"]["n_documents"] == stored["n_documents"] > 2


def test_sentencepiece_encoder_trains_and_exports_end_to_end(tmp_path, tiny_corpora):
    from training.workflows import run_export, run_train

    encoder = tiny.build_tiny_encoder(tmp_path / "encoder", "unigram")
    config = tiny.write_config(tmp_path, encoder, tiny_corpora, training__epochs=1)
    run = run_train(
        config, tmp_path / "run", [], progress=False, data_root=tiny.data_root(tiny_corpora)
    )
    metadata = run_export(
        run,
        tmp_path / "model",
        ["export.keep_fp32=false"],
        threads=1,
        data_root=tiny.data_root(tiny_corpora),
    )
    assert metadata.special_tokens.cls_id == 0 and metadata.special_tokens.pad_id == 1
    assert metadata.onnx_files == {"int8": "model.int8.onnx"}
    assert not (tmp_path / "model" / "model.onnx").exists()
    assert set(metadata.metrics["dev"]) == {"int8", "fp32"}
    [result] = Predictor.load(tmp_path / "model", threads=1).analyze(["زار ماكرون بيروت"])
    assert set(result.topic_scores) == set(metadata.topic_labels)


def test_entity_only_model_from_an_untrimmed_run(tmp_path, tiny_corpora):
    from training.workflows import run_export, run_train

    encoder = tiny.build_tiny_encoder(tmp_path / "encoder", "wordpiece")
    config = tiny.write_config(tmp_path, encoder, tiny_corpora, training__epochs=1)
    run = run_train(
        config,
        tmp_path / "run",
        ["topics=null", "training.trim_vocab=false"],
        progress=False,
        data_root=tiny.data_root(tiny_corpora),
    )
    metadata = run_export(
        run, tmp_path / "model", [], threads=1, data_root=tiny.data_root(tiny_corpora)
    )
    assert metadata.topic_labels == []
    # Training kept the whole vocabulary, so export trims it.
    assert "vocabulary" not in metadata.base_encoder
    vocab = metadata.metrics["export"]["vocab"]
    assert vocab["trimmed"] and vocab["corpus_tokens_checked_one_to_one"] > 0
    [result] = Predictor.load(tmp_path / "model", threads=1).analyze(["زار ماكرون بيروت"])
    assert result.topic_scores == {} and result.topics == []


def test_malformed_corpus_stops_training_with_file_and_line(tmp_path, tiny_corpora):
    from serving.errors import DataError
    from training.workflows import run_train

    bad = tmp_path / "bad.txt"
    bad.write_text("زار O\nماكرون\n", encoding="utf-8")
    encoder = tiny.build_tiny_encoder(tmp_path / "encoder", "wordpiece")
    config = tiny.write_config(tmp_path, encoder, dict(tiny_corpora, ner_train=bad))
    with pytest.raises(DataError, match=r"bad.txt:2"):
        run_train(
            config,
            tmp_path / "run",
            [],
            progress=False,
            data_root=tiny.data_root(dict(tiny_corpora, ner_train=bad)),
        )


def test_ship_keeps_only_the_default_variant_and_every_metric(tiny_model_dir, tmp_path):
    from training.ship import run_ship

    shipped = run_ship(tiny_model_dir, tmp_path / "shipped")
    names = {p.name for p in (tmp_path / "shipped").iterdir()}
    lexical = {shipped.lexical_head} if shipped.lexical_head else set()
    assert names == {"khabar.json", "tokenizer.json", "MODEL_CARD.md", "model.int8.onnx", *lexical}
    assert shipped.metrics == ModelMetadata.load(tiny_model_dir).metrics
    assert set(shipped.file_sha256) == {"tokenizer.json", "model.int8.onnx", *lexical}
    assert Predictor.load(tmp_path / "shipped", threads=1).analyze(["بيروت"])[0].topic_scores


def test_ship_in_place_makes_an_older_record_portable(tiny_model_dir, tiny_data_root, tmp_path):
    from training.ship import run_ship

    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    # As models exported before data roots recorded them: absolute paths, no file sums.
    record = json.loads((model / "khabar.json").read_text(encoding="utf-8"))
    del record["file_sha256"]
    config = record["training"]["config"]
    config["entities"]["train"] = str(tiny_data_root / config["entities"]["train"])
    files = record["training"]["data_files"]
    record["training"]["data_files"] = {str(tiny_data_root / k): v for k, v in files.items()}
    (model / "khabar.json").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")

    shipped = run_ship(model, model, data_root=tiny_data_root)
    text = (model / "khabar.json").read_text(encoding="utf-8")
    assert str(tiny_data_root) not in text
    assert shipped.training["config"]["entities"]["train"] == "ner_train.txt"
    assert "ner_train.txt" in shipped.training["data_files"]
    assert set(shipped.file_sha256) == set(shipped.runtime_files)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging directory left
    assert Predictor.load(model, threads=1).analyze(["بيروت"])


def test_ship_keeps_the_source_card_when_the_recipe_notes_are_not_there(tiny_model_dir, tmp_path):
    from training.ship import run_ship

    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    record = json.loads((model / "khabar.json").read_text(encoding="utf-8"))
    record["training"]["config"]["card_notes"] = "notes-only-in-the-repository.md"
    (model / "khabar.json").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    run_ship(model, tmp_path / "shipped")
    card = (tmp_path / "shipped" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert card == (model / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_ship_refuses_a_corrupt_source(tiny_model_dir, tmp_path):
    from serving.errors import ModelLoadError
    from training.ship import run_ship

    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    with (model / "tokenizer.json").open("a", encoding="utf-8") as handle:
        handle.write(" ")
    with pytest.raises(ModelLoadError, match="tokenizer.json: corrupt or changed"):
        run_ship(model, tmp_path / "shipped")
    assert not (tmp_path / "shipped").exists()


def test_export_refuses_a_directory_that_holds_files_unless_forced(
    tiny_run, tiny_data_root, tmp_path
):
    from serving.errors import ConfigError
    from training.workflows import run_export

    output = tmp_path / "model"
    output.mkdir()
    (output / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not empty"):
        run_export(tiny_run, output, [], threads=1, data_root=tiny_data_root)
    metadata = run_export(tiny_run, output, [], threads=1, data_root=tiny_data_root, force=True)
    assert not (output / "notes.txt").exists()
    assert set(metadata.file_sha256) == set(metadata.runtime_files)


def test_topic_head_refit_reports_dev_scores_and_keeps_the_better_head(
    tiny_run, tiny_data_root, tmp_path
):
    import shutil

    from training.refit import refit_topic_head

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    report = refit_topic_head(run, epochs=5, show_progress=False, data_root=tiny_data_root)
    assert report["train_articles"] > 0 and report["dev_articles"] > 0
    assert report["after"]["section_accuracy"] >= report["before"]["section_accuracy"]
    assert report["replaced"] == (report["chosen_pass"] > 0)
    stored = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert stored["topic_refit"]["chosen_pass"] == report["chosen_pass"]


def test_refit_tries_each_layer_and_records_the_chosen_one(tiny_run, tiny_data_root, tmp_path):
    import shutil

    from training.model import KhabarModel
    from training.refit import refit_topic_head

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    report = refit_topic_head(
        run, epochs=3, layers=[None, 1], show_progress=False, data_root=tiny_data_root
    )
    assert report["candidate_layers"] == [None, 1]
    assert {h["layer"] for h in report["history"]} == {None, 1}
    saved = KhabarModel.load(run / "checkpoint")
    expected = report["chosen_layer"] if report["replaced"] else None
    assert saved.topic_layer == expected
    with pytest.raises(Exception, match="topic layer 7"):
        refit_topic_head(run, epochs=1, layers=[7], show_progress=False, data_root=tiny_data_root)


def test_a_middle_topic_layer_exports_with_parity(tiny_run, tmp_path):
    import shutil

    from training.model import KhabarModel

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    model = KhabarModel.load(run / "checkpoint")
    model.topic_layer = 1
    model.save(run / "checkpoint")
    output = tmp_path / "model"
    export_run(run, output, ExportConfig(trim_vocab=False, quantize=False))
    onnx = Predictor.load(output, threads=1, variant="fp32")
    _, reloaded = load_run(run)
    assert reloaded.topic_layer == 1
    torch_predictor = Predictor(onnx.metadata, onnx.tokenizer, TorchSession(reloaded, threads=1))
    last = KhabarModel.load(tiny_run / "checkpoint")
    last_predictor = Predictor(onnx.metadata, onnx.tokenizer, TorchSession(last, threads=1))
    for a, b, c in zip(
        onnx.analyze(TEXTS),
        torch_predictor.analyze(TEXTS),
        last_predictor.analyze(TEXTS),
        strict=True,
    ):
        np.testing.assert_allclose(
            list(a.topic_scores.values()), list(b.topic_scores.values()), atol=1e-4
        )
        assert [(e.start, e.end) for e in a.entities] == [(e.start, e.end) for e in c.entities]
    assert any(
        not np.allclose(list(a.topic_scores.values()), list(c.topic_scores.values()), atol=1e-4)
        for a, c in zip(onnx.analyze(TEXTS), last_predictor.analyze(TEXTS), strict=True)
    )


def test_weight_average_competes_for_the_checkpoint_each_epoch(tmp_path, tiny_corpora):
    from training.rundir import CHECKPOINT_DIR
    from training.workflows import run_train

    encoder = tiny.build_tiny_encoder(tmp_path / "encoder")
    config = tiny.write_config(
        tmp_path,
        encoder,
        tiny_corpora,
        training__epochs=2,
        training__ema_decay=0.9,
        training__topic_encoder_gradient=False,
    )
    run = run_train(
        config, tmp_path / "run", [], progress=False, data_root=tiny.data_root(tiny_corpora)
    )
    history = json.loads((run / "run.json").read_text(encoding="utf-8"))["history"]
    assert len(history) == 2
    for record in history:
        assert "micro_f1" in record["dev_ema"]["entity"]
        assert record["ema_selection_score"] == record["dev_ema"]["entity"]["micro_f1"]
    assert history[0]["saved"] in (True, "ema")
    assert (run / CHECKPOINT_DIR).is_dir()
