"""A training run's directory: its file names, and reading and writing its ``run.json``.

``khabar train`` writes a run: ``run.json``, ``checkpoint/`` and the tokenizer (named as in a
model directory, ``serving.metadata.TOKENIZER_NAME``); ``export``, ``refit-topics`` and the
benchmark read it. Every one of them names the files through this module, which imports no
torch.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from serving.errors import ModelLoadError

RUN_NAME = "run.json"
CHECKPOINT_DIR = "checkpoint"


def library_versions() -> dict[str, str]:
    """Versions of everything that shapes a model's numbers, for the card."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for package in (
        "khabar",
        "torch",
        "transformers",
        "tokenizers",
        "onnx",
        "onnxruntime",
        "numpy",
        "seqeval",
    ):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            continue
    return versions


def read_run(run_dir: Path) -> dict[str, Any]:
    """Read a training run's ``run.json`` (config, metadata draft, data hashes, history).

    Raises:
        ModelLoadError: The directory is not a finished training run.
    """
    run_file = run_dir / RUN_NAME
    if not run_file.is_file() or not (run_dir / CHECKPOINT_DIR).is_dir():
        raise ModelLoadError(
            f"{run_dir} is not a finished training run (needs {RUN_NAME} and {CHECKPOINT_DIR}/)"
        )
    return json.loads(run_file.read_text(encoding="utf-8"))


def write_run(run_dir: Path, run: dict[str, Any]) -> None:
    """Write ``run.json`` into ``run_dir``."""
    (run_dir / RUN_NAME).write_text(json.dumps(run, ensure_ascii=False, indent=2), encoding="utf-8")
