"""Refitting the section columns of an exported graph on serving's own windows."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from serving.metadata import ModelMetadata  # noqa: E402
from serving.predictor import Predictor  # noqa: E402
from serving.session import OnnxSession  # noqa: E402
from training.section_head import (  # noqa: E402
    POOLED_OUTPUT,
    fit_section_columns,
    read_head,
    refit_section_head,
    replace_head,
    with_pooled_output,
)

IDS = np.array([[0, 7, 8, 9, 10, 2], [0, 11, 12, 13, 2, 1]], dtype=np.int64)
MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]], dtype=np.int64)


def outputs(path: Path) -> dict[str, np.ndarray]:
    return OnnxSession(path, threads=1).run(IDS, MASK)


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_the_pooled_output_and_the_read_head_give_the_graphs_topic_logits(
    tiny_model_dir, tmp_path, variant
):
    metadata = ModelMetadata.load(tiny_model_dir)
    model = onnx.load(tiny_model_dir / metadata.onnx_files[variant])
    weights, bias = read_head(model)
    onnx.save(with_pooled_output(model), tmp_path / "features.onnx")
    out = outputs(tmp_path / "features.onnx")
    rebuilt = out[POOLED_OUTPUT] @ weights + bias
    # int8 quantises the pooled vector before the head; float32 reads it as it is.
    tolerance = 1e-4 if variant == "fp32" else 0.1 * (1 + np.abs(rebuilt).max())
    np.testing.assert_allclose(out["topic_logits"], rebuilt, atol=tolerance)


def test_a_replaced_head_computes_exactly_the_new_weights_and_leaves_entities_alone(
    tiny_model_dir, tmp_path
):
    path = tiny_model_dir / ModelMetadata.load(tiny_model_dir).onnx_files["int8"]
    before = outputs(path)
    model = onnx.load(path)
    weights, bias = read_head(model)
    rng = np.random.default_rng(0)
    new_weights = rng.normal(size=weights.shape).astype(np.float32)
    new_bias = rng.normal(size=bias.shape).astype(np.float32)
    onnx.save(with_pooled_output(onnx.load(path)), tmp_path / "features.onnx")
    pooled = outputs(tmp_path / "features.onnx")[POOLED_OUTPUT]
    onnx.save(replace_head(model, new_weights, new_bias), tmp_path / "replaced.onnx")
    after = outputs(tmp_path / "replaced.onnx")
    np.testing.assert_allclose(after["topic_logits"], pooled @ new_weights + new_bias, atol=1e-4)
    np.testing.assert_array_equal(after["entity_logits"], before["entity_logits"])


def test_fitting_learns_separable_sections_and_leaves_other_columns():
    rng = np.random.default_rng(1)

    def split(n):
        labels = rng.integers(0, 2, n)
        features = rng.normal(size=(n, 6)).astype(np.float32)
        features[:, 0] += np.where(labels == 0, 3.0, -3.0)
        targets = np.zeros((n, 3), dtype=np.float32)
        targets[np.arange(n), labels] = 1.0
        return features, np.zeros((n, 3), np.float32), targets, np.ones((n, 3), np.float32)

    weights = np.zeros((6, 3), dtype=np.float32)
    weights[:, 2] = 5.0  # a column that is not a section
    bias = np.zeros(3, dtype=np.float32)
    new_weights, _, report = fit_section_columns(
        split(400), split(100), weights, bias, [0, 1], seed=0, epochs=10, learning_rate=0.05
    )
    assert report["after"]["section_accuracy"] > 95 > report["before"]["section_accuracy"]
    assert report["chosen_pass"] > 0
    np.testing.assert_array_equal(new_weights[:, 2], weights[:, 2])


def test_refit_rewrites_every_variant_and_the_model_still_loads(
    tiny_model_dir, tiny_run, tiny_data_root, tmp_path
):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    report = refit_section_head(
        model_dir,
        tiny_run.parent / "tiny.yaml",
        tiny_data_root,
        threads=1,
        show_progress=False,
        features_cache=tmp_path / "cache",
    )
    metadata = ModelMetadata.load(model_dir)
    assert metadata.training["section_head"]["chosen_pass"] == report["chosen_pass"]
    assert set(metadata.thresholds) == set(metadata.topic_labels)
    if report["replaced"]:
        for name in metadata.onnx_files.values():
            graph = onnx.load(model_dir / name)
            assert any(i.name == "topic_head.refit.weight" for i in graph.graph.initializer)
    assert list((tmp_path / "cache").glob("*.npz"))  # features kept for the next refit
    [result] = Predictor.load(model_dir, threads=1).analyze(["زار ماكرون بيروت."])
    assert set(result.topic_scores) == set(metadata.topic_labels)


def test_refit_sections_command_prints_the_report(
    tiny_model_dir, tiny_run, tiny_data_root, tmp_path
):
    import json
    import subprocess
    import sys

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    result = subprocess.run(
        [sys.executable, "-m", "khabar_cli.app", "refit-sections", str(model_dir), "-q"]
        + ["--config", str(tiny_run.parent / "tiny.yaml"), "--data", str(tiny_data_root)]
        + ["--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    recorded = ModelMetadata.load(model_dir).training["section_head"]
    assert report["chosen_pass"] == recorded["chosen_pass"]
    assert report["dev_articles"] > 0 and "history" not in report
