"""The import graph of ``bench`` has no circle between modules.

Every ``import`` / ``from … import`` counts, including lazy ones inside functions; relative
imports are resolved. An edge from a module to its own parent package (``bench.x.y`` →
``bench.x`` or ``bench``) is left out: Python runs a package's ``__init__`` before any of its
modules, so such an edge cannot form a real import cycle with the package's own re-exports.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """Dotted module name → (file, is a package ``__init__``)."""
    out = {}
    for path in sorted((root / "bench").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module → the ``bench`` modules it imports (at any depth of its code)."""
    mods = modules(root)

    def resolve(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        package = name if is_pkg else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets.add(module)
                targets.update(f"{module}.{a.name}" for a in node.names)  # `from pkg import submodule`
        edges = {resolve(t) for t in targets if t.split(".")[0] == "bench"}
        graph[name] = {t for t in edges if t and t != name
                       and not (mods[t][1] and name.startswith(t + "."))}  # own parent package: see above
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_circle_between_bench_modules():
    graph = import_graph()
    assert len(graph) > 100  # the whole package was read
    found = cycles(graph)
    assert not found, "import circles (each line: modules that import each other):\n" + "\n".join(
        " ↔ ".join(c) for c in found)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """A circle closed only by a lazy, relative import inside a function is found."""
    pkg = tmp_path / "bench" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "bench" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from bench.sub.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from .a import x\n    return x\n")
    (pkg / "c.py").write_text("import bench.sub\nfrom bench import sub\n")  # parent package: not a circle
    graph = import_graph(tmp_path)
    assert graph["bench.sub.b"] == {"bench.sub.a"}
    assert cycles(graph) == [["bench.sub.a", "bench.sub.b"]]

