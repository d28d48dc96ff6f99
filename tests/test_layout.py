"""The package's shape: imports point one way, privates stay private, files stay readable.

    pytest tests/test_layout.py

Read from the source with `ast`, so imports inside functions count as much as those at the top:
an import hidden in a function to dodge a circle is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_LINES = 500  # past this a module is usually doing two jobs (STYLE.md, "The house")

# The pipeline, bottom first: a module imports only from rows below its own (docs/explanation/layout.md
# draws the same). Within one package (data, train, report, ...) its modules
# import each other freely, without circles.
LAYERS = (
    ("mnistlab.errors", "mnistlab.files", "mnistlab.version"),
    ("mnistlab.backends",),
    ("mnistlab.modelfile",),
    ("mnistlab.config",),
    ("mnistlab.data",),
    ("mnistlab.models", "mnistlab.runs", "mnistlab.inference"),
    ("mnistlab.calibrate", "mnistlab.personal"),
    ("mnistlab.evaluate", "mnistlab.runtimes"),
    ("mnistlab.train",),
    ("mnistlab.finetune", "mnistlab.predict"),
    ("mnistlab.export",),
    ("mnistlab.report", "mnistlab.serve", "mnistlab.teach", "mnistlab.tune"),
    ("mnistlab.api", "mnistlab.cli"),
    ("mnistlab",),  # the package's own __init__: the Python API, on top of everything
)


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module and package of mnistlab."""
    found = {}
    for path in sorted((SRC / "mnistlab").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(module imported from, name imported or None, line) for every mnistlab import in a file.

    `from a.b import c` where a.b.c is a module counts as importing a.b.c.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "mnistlab"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb from this module's package
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if base.split(".")[0] != "mnistlab":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub, None, node.lineno) if sub in MODULES else (base, alias.name, node.lineno))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the mnistlab modules it imports (lazy imports included)."""
    return {name: {m for m, _, _ in _imports(name, path) if m in MODULES and m != name}
            for name, path in MODULES.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_circles_are_found_by_the_checker():
    """The oracle for circles() itself: a hand-made graph with one circle of three and a tail."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "mnistlab.errors" in graph["mnistlab.data.mnist"]
    assert graph["mnistlab.errors"] == set()


def test_no_import_circles():
    assert circles(import_graph()) == []


def _unit(module: str) -> tuple[int, str]:
    """(row in LAYERS, the unit: the longest LAYERS name that is the module or a package above it)."""
    return max(((row, unit) for row, units in enumerate(LAYERS) for unit in units
                if module == unit or module.startswith(unit + ".")), key=lambda found: len(found[1]))


def test_every_module_has_a_place_in_the_layers():
    """A new top-level module is given its row in LAYERS; it does not fall into the package root's."""
    assert [name for name in MODULES if name != "mnistlab" and _unit(name)[1] == "mnistlab"] == []


def test_imports_point_down_the_layers():
    upward = []
    for name, targets in import_graph().items():
        (row, unit) = _unit(name)
        for target in targets:
            (target_row, target_unit) = _unit(target)
            if target_unit != unit and target_row >= row:
                upward.append(f"{name} imports {target}")
    assert sorted(upward) == []


def test_data_imports_nothing_above_it():
    """`data` is the bottom of the pipeline: it may use errors and files, nothing else of ours."""
    allowed = ("mnistlab.data", "mnistlab.errors", "mnistlab.files")
    wrong = {name: sorted(m for m in targets if not m.startswith(allowed))
             for name, targets in import_graph().items() if name.startswith("mnistlab.data")}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_no_private_name_is_imported_from_another_module():
    leaks = [f"{MODULES[name].relative_to(SRC)}:{line} imports {what} from {source}"
             for name, path in MODULES.items()
             for source, what, line in _imports(name, path)
             if what and what.startswith("_") and not what.startswith("__") and source != name]
    assert leaks == []


def test_no_private_name_is_reached_through_another_module():
    """`from mnistlab.data import images` then `images._find_ink`: the same leak, spelled otherwise."""
    leaks = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        bound = {}  # local name -> the mnistlab module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnistlab"):
                bound.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names
                              if f"{node.module}.{a.name}" in MODULES})
            elif isinstance(node, ast.Import):
                bound.update({a.asname: a.name for a in node.names if a.asname and a.name in MODULES})
        leaks += [f"{path.relative_to(SRC)}:{node.lineno} uses {node.value.id}.{node.attr}"
                  for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and bound.get(node.value.id, name) != name
                  and node.attr.startswith("_") and not node.attr.startswith("__")]
    assert leaks == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_short_enough_to_read(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(SRC)} has {lines} lines; split it by job"
