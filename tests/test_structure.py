"""The package's structure, read from its source: no import cycles between modules,
and steps that ask runners only through the runner protocol."""

from __future__ import annotations

import ast
from pathlib import Path

import workbench
from workbench.runners import Runner

PACKAGE = Path(workbench.__file__).resolve().parent


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _imported(node: ast.AST, package: str, modules: dict) -> set[str]:
    """The workbench modules one import statement imports (``from . import x`` imports
    the submodule ``x`` when there is one, else the package)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = set()
    for alias in node.names:
        submodule = f"{target}.{alias.name}"
        if submodule in modules:
            found.add(submodule)
        elif target in modules:
            found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Every import between workbench modules, wherever it is written (module level,
    inside functions, under TYPE_CHECKING): each one is a dependency."""
    modules = _modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = {dep for node in ast.walk(tree) for dep in _imported(node, package, modules)} - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for dependency in sorted(graph[module]):
            if dependency not in index:
                visit(dependency)
                low[module] = min(low[module], low[dependency])
            elif dependency in stack:
                low[module] = min(low[module], index[dependency])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_workbench_modules() -> None:
    graph = import_graph()
    assert "workbench.steps.compare" in graph["workbench.chain"]  # the graph sees imports
    assert cycles(graph) == []


def _runner_classes() -> set[str]:
    import workbench.runners.opencv_runner  # noqa: F401 (imported for its runner class)

    found, pending = set(), [Runner]
    while pending:
        for subclass in pending.pop().__subclasses__():
            found.add(subclass.__name__)
            pending.append(subclass)
    return found


def test_steps_ask_runners_only_through_the_protocol() -> None:
    """No ``isinstance`` on a concrete runner, no probing of members (``getattr``,
    ``inspect.signature``), no private runner helpers in ``steps/``."""
    concrete = _runner_classes()
    assert {"OnnxRuntimeRunner", "TorchRunner", "OpenCVCaffeRunner", "RecordedRunner"} <= concrete
    offences = []
    for path in sorted((PACKAGE / "steps").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
                named = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                offences += [f"{path.name}:{node.lineno} isinstance on {n}" for n in named & concrete]
            if isinstance(node, ast.ImportFrom) and node.module and "runners" in node.module:
                offences += [
                    f"{path.name}:{node.lineno} imports {a.name}" for a in node.names if a.name.startswith("_")
                ]
                offences += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names if a.name in concrete]
            if isinstance(node, ast.Attribute) and node.attr == "signature":
                offences.append(f"{path.name}:{node.lineno} inspects a signature")
    assert offences == []
