"""What a user installs: the wheel carries the model, CI runs the README's commands."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from importlib import resources
from pathlib import Path

from serving.metadata import DEFAULT_MODEL_DIR, default_model_dir

REPO = Path(__file__).resolve().parents[1]


def test_the_checkout_finds_the_model_as_package_data_of_serving() -> None:
    assert default_model_dir() == DEFAULT_MODEL_DIR
    assert Path(str(resources.files("serving"))) / "models" / "default" == DEFAULT_MODEL_DIR
    assert DEFAULT_MODEL_DIR.resolve() == (REPO / "models" / "default").resolve()


def test_the_wheel_takes_every_file_of_the_shipped_model() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["serving"]
    shipped = [p.relative_to(REPO).as_posix() for p in (REPO / "models" / "default").iterdir()]
    assert shipped
    for name in shipped:
        assert any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns), name


def test_ci_runs_the_readme_test_command_and_the_wheel_check() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    [command] = re.findall(r"^python3 -m venv .venv && .*pytest$", readme, flags=re.M)
    assert command in ci.splitlines()
    assert ".ci/check-wheel" in ci.splitlines()
    quick_start = re.findall(
        r"^python3 -m venv .venv && \.venv/bin/pip install '\.\[serve\]'", readme, flags=re.M
    )
    assert quick_start, "the quick start installs the package as users do (not editable)"
