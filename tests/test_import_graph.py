"""The project's import graph, built from the AST: the runtime never reaches into training,
no module imports another that imports it back, and no file outgrows 600 lines.

Every import counts, at module level or inside a function: an import moved into a function
hides a cycle from Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("khabar_cli", "serving", "training", "benchmarks", "tools")
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files() -> dict[str, Path]:
    """Module name -> file, for every module of the project's packages."""
    return {
        module_name(path): path
        for package in PACKAGES
        if (REPO / package).is_dir()
        for path in sorted((REPO / package).rglob("*.py"))
    }


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The project modules that ``name`` (its file at ``path``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            # ``from package import module`` imports the module; ``from module import name``
            # imports the module that defines the name.
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                for alias in node.names
            ]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = project_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_project() -> None:
    graph = import_graph()
    assert "serving.predictor" in graph and "training.export" in graph
    assert "serving.metadata" in graph["training.export"]
    assert "khabar_cli.app" in graph and "serving.predictor" in graph["khabar_cli.app"]


def test_the_graph_finds_a_cycle_and_a_relative_import(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    module = tmp_path / "pkg" / "inner.py"
    module.parent.mkdir()
    module.write_text("def f():\n    from . import other\n    from .deep.x import y\n")
    found = imports_of("pkg.inner", module, {"pkg", "pkg.other", "pkg.deep", "pkg.deep.x"})
    assert found == {"pkg.other", "pkg.deep.x"}


def test_serving_never_imports_training() -> None:
    wrong = sorted(
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        if name.split(".")[0] == "serving"
        for target in targets
        if target.split(".")[0] == "training"
    )
    assert not wrong, f"serving/ imports training/: {wrong}"


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, f"import cycles: {found}"


def test_no_file_is_over_600_lines() -> None:
    long = sorted(
        f"{path.relative_to(REPO)} ({count} lines)"
        for path in REPO.rglob("*.py")
        if not {".venv", ".git", "node_modules"} & set(path.relative_to(REPO).parts)
        and (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    )
    assert not long, f"over {MAX_LINES} lines: {long}"
