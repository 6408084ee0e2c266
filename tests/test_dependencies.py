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
# Packages checked against the extra that installs them; a sub-package with its own extra
# is left out of its parent's check.
CHECKS = [
    ("khabar_cli", "serve", ()),
    ("serving", "serve", ("serving/ray_batch",)),
    ("serving/ray_batch", "ray", ()),
    ("training", "train", ()),
]


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


def imported(package: str, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """Top-level third-party modules imported anywhere under ``package`` -> a file using it."""
    found: dict[str, str] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        if any(path.is_relative_to(REPO / excluded) for excluded in exclude):
            continue
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


@pytest.mark.parametrize(("package", "extra", "exclude"), CHECKS)
def test_every_import_is_declared_in_its_extra(
    package: str, extra: str, exclude: tuple[str, ...]
) -> None:
    providers = importlib.metadata.packages_distributions()
    allowed = declared(extra)
    undeclared = []
    for module, where in imported(package, exclude).items():
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


def installed_closure(names: set[str]) -> set[str]:
    """Every distribution these installed ones require, as their metadata says, transitively.

    A requirement counts when its marker holds here with the extras asked of it, so this is
    what ``pip install`` of these names brings.
    """
    from packaging.requirements import Requirement

    found: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(name, frozenset[str]()) for name in names]
    while pending:
        key = pending.pop()
        if key in seen:
            continue
        seen.add(key)
        name, extras = key
        found.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in (*extras, "")):
                pending.append((normalise(requirement.name), frozenset(requirement.extras)))
    return found


def test_the_serve_install_brings_no_ray() -> None:
    assert "ray" in declared("ray")
    assert "ray" not in declared("serve")
    closure = installed_closure(declared("serve"))
    assert "fastapi" in closure and "starlette" in closure  # the walk does follow requirements
    assert not {"ray", "torch"} & closure
