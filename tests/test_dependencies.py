"""Every package a module imports is declared in pyproject.toml, in the extra that needs it.

A package that only arrives as another's dependency can disappear with that package's
next release; the runtime must install from the serve extra alone.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = {"khabar_cli", "serving", "training", "benchmarks", "tests", "tools"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extra: str | None) -> set[str]:
    """Distributions installed by ``pip install khabar[extra]`` as declared (not transitive)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names: set[str] = set()
    pending = [*project["dependencies"], *(f"khabar[{extra}]",) * (extra is not None)]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]+)\])?", requirement)
        assert match, requirement
        name, extras = normalise(match.group(1)), match.group(2)
        if name == "khabar":
            for inner in (extras or "").split(","):
                inner = inner.strip()
                if inner and inner not in seen:
                    seen.add(inner)
                    pending += project["optional-dependencies"][inner]
        else:
            names.add(name)
    return names


def imported(package: str) -> dict[str, str]:
    """Top-level third-party modules imported anywhere under ``package`` -> a file using it."""
    found: dict[str, str] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in PROJECT_PACKAGES:
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


@pytest.mark.parametrize(
    ("package", "extra"), [("khabar_cli", "serve"), ("serving", "serve"), ("training", "train")]
)
def test_every_import_is_declared_in_its_extra(package: str, extra: str) -> None:
    providers = importlib.metadata.packages_distributions()
    allowed = declared(extra)
    undeclared = []
    for module, where in imported(package).items():
        distributions = {normalise(name) for name in providers.get(module, [])}
        assert distributions, f"{module} (imported in {where}) is not installed"
        if not distributions & allowed:
            undeclared.append(f"{module} ({where}; from {sorted(distributions)})")
    assert not undeclared, f"imported by {package}/ but not declared for [{extra}]: {undeclared}"


def test_the_runtime_needs_no_training_package() -> None:
    serve = declared("serve")
    assert not {"torch", "transformers", "scikit-learn", "scipy", "onnx"} & serve


def test_declared_but_unused_packages_are_gone() -> None:
    # `datasets` was declared and never imported (README: "Why not datasets").
    assert "datasets" not in declared("dev")
