"""The package's layout shows its architecture: data flows one way, with no import cycle.

The ML core (datasets -> labels -> pipeline -> models / losses -> train -> evaluate -> plots,
results) sits at the top level of ``faceattr_lab``; the course's operations (running, grading,
releasing, self-checks) sit in ``faceattr_lab/course/``, which uses the core and is never used
by it. Imports are read with ``ast`` (nothing is imported), including those inside functions
and the ``fl.<module>`` attributes of a module that imports the package as ``fl``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "faceattr_lab"
CORE = ("config", "datasets", "labels", "pipeline", "models", "losses", "train", "evaluate",
        "plots", "results")
# the data flow of ARCHITECTURE.md: a unit may import only units listed before it here
FLOW = ("results", "config", "datasets", "labels", "pipeline", "losses", "models", "train",
        "evaluate", "plots")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules a file imports (``from faceattr_lab import config`` is
    ``faceattr_lab.config``; ``fl.train`` after ``import faceattr_lab as fl`` too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, aliases = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "faceattr_lab":
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "faceattr_lab":
                    aliases.add(alias.asname or alias.name)
                elif alias.name.startswith("faceattr_lab."):
                    found.add(alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases and f"faceattr_lab.{node.attr}" in known:
            found.add(f"faceattr_lab.{node.attr}")
    return found


def unit(module: str) -> str:
    """``faceattr_lab.models.heads`` -> ``models``; the package itself -> ``faceattr_lab``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def graph(level) -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        for target in imports_of(path, set(known)):
            a, b = level(name), level(target)
            if a != b and b != "faceattr_lab":  # the package root holds only lazy loaders
                edges.setdefault(a, set()).add(b)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one node."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted({*edges, *(n for targets in edges.values() for n in targets)}):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle_and_accepts_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}}) == []


def test_reading_imports_sees_function_level_and_fl_attribute_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import numpy\n"
                      "def f():\n"
                      "    from faceattr_lab import config\n"
                      "    from faceattr_lab.models.heads import add_heads\n"
                      "    import faceattr_lab as fl\n"
                      "    return fl.train.fit, fl.set_seed\n")
    known = {"faceattr_lab.config", "faceattr_lab.models", "faceattr_lab.models.heads",
             "faceattr_lab.train"}
    assert imports_of(source, known) == {"faceattr_lab.config", "faceattr_lab.models.heads",
                                         "faceattr_lab.train"}


def test_no_import_cycle_between_modules_or_between_folders():
    assert not cycles(graph(lambda m: m)), cycles(graph(lambda m: m))
    assert not cycles(graph(unit)), cycles(graph(unit))


def test_the_core_never_imports_the_course():
    edges = graph(unit)
    users = sorted(u for u in CORE if "course" in edges.get(u, set()))
    assert not users, f"{users} import faceattr_lab.course; the core must not depend on it"


def test_the_core_imports_only_upstream_of_itself():
    edges = graph(unit)
    wrong = [f"{a} imports {b}" for a in FLOW for b in sorted(edges.get(a, set()))
             if b in FLOW and FLOW.index(b) > FLOW.index(a)]
    assert not wrong, wrong


def test_course_operations_live_in_the_course_folder():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert not top & {"checks", "runner", "grader", "release", "notebooks"}, top
    assert {"checks", "runner", "grader", "release"} <= {p.stem for p in
                                                         (PACKAGE / "course").glob("*.py")}
