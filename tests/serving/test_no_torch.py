"""The runtime must work with only the serve extra: torch and transformers unimportable."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "transformers", "datasets", "seqeval", "onnx"}:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_runtime_imports_and_predicts_without_torch(tiny_model_dir):
    result = run_blocked(
        f"""
        import json
        from pathlib import Path
        from serving.predictor import Predictor
        from serving.api.app import create_app
        import khabar_cli.app
        predictor = Predictor.load(Path({str(tiny_model_dir)!r}), threads=1)
        [doc] = predictor.analyze(["زار الرئيس ماكرون بيروت"])
        create_app(predictor=predictor)
        print(json.dumps({{"torch": "torch" in sys.modules, "labels": sorted(doc.topic_scores)}}))
        """
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["torch"] is False
    assert payload["labels"]


def test_help_lists_every_verb_without_torch():
    result = run_blocked(
        """
        from khabar_cli.app import main
        main(["--help"])
        """
    )
    assert result.returncode == 0, result.stderr
    for verb in ("predict", "serve", "train", "export", "evaluate", "ship", "stories", "data"):
        assert verb in result.stdout
    assert "torch" not in result.stderr


@pytest.mark.slow
def test_training_commands_say_which_extra_is_missing(tmp_path):
    result = run_blocked(
        f"""
        from khabar_cli.app import main
        main(["train", {str(tmp_path / "x.yaml")!r}])
        """
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install -e '.[train]'" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_ship_and_data_check_run_without_torch(tiny_model_dir, tiny_corpora, tmp_path):
    from tests import tiny

    config = tiny.write_config(tmp_path, tmp_path / "encoder", tiny_corpora)
    data = tiny.data_root(tiny_corpora)
    result = run_blocked(
        f"""
        import sys
        from khabar_cli.app import main
        try:
            main(["ship", {str(tiny_model_dir)!r}, "-o", {str(tmp_path / "shipped")!r}])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        main(["data", "check", "--config", {str(config)!r}, "--data", {str(data)!r},
              "--model", {str(tmp_path / "shipped")!r}])
        """
    )
    assert result.returncode == 0, result.stderr
    assert "shipped" in result.stdout and "files found" in result.stdout
    assert (tmp_path / "shipped" / "model.int8.onnx").is_file()
