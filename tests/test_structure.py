"""The layering holds, read from the code's own imports (every import, at module level or inside a function; those
under ``if TYPE_CHECKING:`` are for type checkers only and left out):

- ``soc/`` holds the shared basics (the event model, codec, storage, metrics, vocabularies, file writing, the plug-in
  contract) and imports no feature package;
- no module imports another package's private names (``from playbooks.cli import _fail`` in reports/ would);
- no import cycle between modules;
- the composition root (``suite/``) is imported by no feature package: features are wired by it, not the other way.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.conftest import PROJECT

PACKAGES = ("soc", "inventory", "collectors", "detections", "playbooks", "reports", "assessment", "soc_api", "suite")
FEATURES = ("inventory", "collectors", "detections", "playbooks", "reports", "assessment", "soc_api", "suite")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((PROJECT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of ours an imported name lives in (``a.b.c`` → ``a.b`` when c is a name in a.b)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for inner in ast.walk(child):
                    if hasattr(inner, "lineno"):
                        lines.add(inner.lineno)
    return lines


def _imports(module: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(module imported, name taken from it or None, line) for every import of one of our modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target:
                    out.append((target, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = _resolve(f"{base}.{alias.name}") if f"{base}.{alias.name}" in MODULES else _resolve(base)
                if target:
                    taken = None if f"{base}.{alias.name}" in MODULES else alias.name
                    out.append((target, taken, node.lineno))
    return out


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_soc_imports_no_feature_package():
    wrong = [f"{module}:{line} imports {target}" for module, imports in GRAPH.items() if _top(module) == "soc"
             for target, _, line in imports if _top(target) in FEATURES]
    assert wrong == [], "soc/ is the shared basics; it must not import a feature package:\n" + "\n".join(wrong)


def test_no_feature_package_imports_the_composition_root():
    wrong = [f"{module}:{line} imports {target}" for module, imports in GRAPH.items() if _top(module) != "suite"
             for target, _, line in imports if _top(target) == "suite"]
    assert wrong == [], "\n".join(wrong)


def test_no_module_takes_another_packages_private_names():
    def package_of(module: str) -> str:
        path = MODULES[module]
        return module if path.name == "__init__.py" else module.rpartition(".")[0]

    wrong = [f"{module}:{line} takes {target}.{name}" for module, imports in GRAPH.items()
             for target, name, line in imports
             if name and name.startswith("_") and not name.startswith("__") and package_of(target) != package_of(module)]
    assert wrong == [], "private names are a package's own:\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules():
    edges: dict[str, set[str]] = defaultdict(set)
    for module, imports in GRAPH.items():
        for target, _, _ in imports:
            if target != module and not module.startswith(target + ".") or target == module:
                if target != module:
                    edges[module].add(target)
    # A package's __init__ importing its own submodules (re-exports) is not a cycle of modules that need each other.
    for module in list(edges):
        edges[module] = {t for t in edges[module] if not module.startswith(t + ".")}
    cycles = []
    index, low, stack, on_stack, counter = {}, {}, [], set(), [0]

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    import sys

    sys.setrecursionlimit(10000)
    for module in sorted(MODULES):
        if module not in index:
            strong(module)
    assert cycles == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
