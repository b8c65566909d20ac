"""The package's import graph runs one way: no import loop, and the method never imports the course tooling.

Read with plain ``ast`` (nothing is imported or run): module-level and function-level imports, absolute and relative.
The wall: ``fit3d_helpers.course`` (report, slides, runner, viz …) may import the method; no module outside it may
import it, except ``fit3d_helpers/__main__.py``, the command line that puts both behind one face.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "fit3d_helpers"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
PRESENTATION = f"{PACKAGE}.course"
ALLOWED_UPWARD = {f"{PACKAGE}.__main__"}  # the CLI face: `python -m fit3d_helpers run|report|params`


def module_names(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` under ``root`` (a package's name is its ``__init__``)."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package (``a.b.func`` → ``a.b``)."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in modules:
            return cand
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """Package modules that ``module`` imports anywhere in its file (→ the first line that does)."""
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: dict[str, int] = {}

    def add(target: str | None, line: int) -> None:
        if target is not None and target != module:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(_resolve(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:  # `from . import paper` imports the module paper; `from .x import f`, x
                sub = f"{prefix}.{alias.name}"
                add(_resolve(sub if sub in modules else prefix, modules), node.lineno)
    return found


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, dict[str, int]]:
    modules = module_names(root, package)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as one loop through it, to print."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # the graph has ~50 nodes: recursion depth is no concern
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_one_loop(sorted(g), graph) for g in groups]


def _one_loop(group: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A path start → … → start inside the group (breadth-first), e.g. ``[a, b, a]``."""
    members, start = set(group), group[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in graph[v]:
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]  # start … v, then back to start
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return group


def upward_imports(graph: dict[str, dict[str, int]], package: str = PACKAGE) -> list[str]:
    """``module:line -> course.x`` for each method module that imports the presentation subpackage."""
    course = f"{package}.course"
    allowed = {f"{package}.__main__"}
    return [
        f"{m}:{line} imports {t}"
        for m, targets in sorted(graph.items())
        for t, line in sorted(targets.items())
        if (t == course or t.startswith(course + ".")) and not (m == course or m.startswith(course + "."))
        if m not in allowed
    ]


def _describe(cycles: list[list[str]], graph: dict[str, dict[str, int]]) -> str:
    lines = []
    for loop in cycles:
        steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in zip(loop, loop[1:])]
        lines.append("import loop: " + "; ".join(steps))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the package


def test_the_graph_sees_relative_absolute_and_function_level_imports():
    g = import_graph()
    assert f"{PACKAGE}.profiles" in g[f"{PACKAGE}.pipeline"]  # from .profiles import … (module level)
    assert f"{PACKAGE}.course.runner" in g[f"{PACKAGE}.__main__"]  # from .course import runner (in a function)
    assert f"{PACKAGE}.course.paper" in g[f"{PACKAGE}.course.tables"]  # from . import paper


def test_no_import_loop_in_the_package():
    g = import_graph()
    cycles = find_cycles(g)
    assert not cycles, "\n" + _describe(cycles, g)


def test_the_method_never_imports_the_course_tooling():
    bad = upward_imports(import_graph())
    assert not bad, (
        "method modules must not import fit3d_helpers.course (it presents results; move what they need below it):\n"
        + "\n".join(bad)
    )


# ------------------------------------------------------------------------------------ the checker can fail


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A small package with one loop (a → b → c → a, one step inside a function) and one upward import."""
    pkg = tmp_path / "pkg"
    (pkg / "course").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import c\n")
    (pkg / "c.py").write_text("from . import a\nimport pkg.course.report\n")
    (pkg / "course" / "__init__.py").write_text("")
    (pkg / "course" / "report.py").write_text("from .. import a\nfrom ..c import x\n")
    (pkg / "__main__.py").write_text("from .course import report\n")
    return pkg


def test_a_planted_loop_and_upward_import_are_caught(planted: Path):
    g = import_graph(planted, "pkg")
    cycles = find_cycles(g)
    assert cycles == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]], cycles
    assert "pkg.b (line 2) -> pkg.c" in _describe(cycles, g)
    assert upward_imports(g, "pkg") == ["pkg.c:2 imports pkg.course.report"]  # __main__ is allowed
