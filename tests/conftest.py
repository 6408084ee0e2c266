"""Session fixtures: a tiny trained and exported model stands in for real weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import tiny


@pytest.fixture(scope="session")
def tiny_corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny.write_corpora(tmp_path_factory.mktemp("corpora"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_corpora: dict[str, Path]) -> Path:
    """A finished training run of a random 2-layer BERT on the tiny corpora."""
    pytest.importorskip("torch")
    from training.cli import run_train

    root = tmp_path_factory.mktemp("run")
    encoder = tiny.build_tiny_encoder(root / "encoder", "wordpiece")
    config = tiny.write_config(root, encoder, tiny_corpora)
    return run_train(config, root / "run", [], progress=False)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """The tiny run exported to ONNX (fp32 and int8), thresholds tuned, card written."""
    from training.cli import run_export

    output = tmp_path_factory.mktemp("model") / "tiny"
    run_export(tiny_run, output, [], threads=1)
    return output
