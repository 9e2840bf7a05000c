"""The architecture holds: imports follow the data flow, nothing imports in a circle, modules stay small.

Host -> Facts -> Rules -> Findings -> Report -> Renderer is one direction. Each package says in its
docstring, on one ``May import:`` line, which of vfio-scan's packages it may import; this test reads
those lines and fails on any import (at the top of a module or inside a function) that is not on
its package's line. So the permission is written where a newcomer reads it, and enforced here.
"""

from __future__ import annotations

import ast
import statistics
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOP_PACKAGES = ("scanner", "rules", "reports")
#: modules that stand for themselves in the import graph: the CLI entry and the stand-alone collector
SINGLE_MODULES = ("scanner.cli", "scanner.__main__", "scanner.collector")
#: the package root is the public face (the version and the plugin API): anything may import it
ROOT = "scanner"
MAX_LINES, MAX_MEDIAN = 400, 150
OVERSIZE_ALLOWED = {"scanner/collector.py"}  # copied to remote hosts whole: one stdlib file by design


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _sources():
    for top in TOP_PACKAGES:
        for path in sorted((REPO / top).rglob("*.py")):
            yield _module_name(path), path


MODULES = dict(_sources())


def _type_checking(node) -> bool:
    test = node.test
    return isinstance(node, ast.If) and (getattr(test, "id", None) == "TYPE_CHECKING"
                                         or getattr(test, "attr", None) == "TYPE_CHECKING")


def _nodes(tree):
    """Every node, except what sits under ``if TYPE_CHECKING:``: names for annotations, never imported."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imports(path: Path):
    """(line, imported module) for every absolute import of a vfio-scan module, lazy ones included."""
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [(node.lineno, f"{node.module}.{a.name}") if f"{node.module}.{a.name}" in MODULES
                     else (node.lineno, node.module) for a in node.names]
        else:
            continue
        for line, name in names:
            if name.split(".")[0] in TOP_PACKAGES:
                yield line, name


def _unit(module: str) -> str:
    """The package (or single module) a module belongs to, whose ``May import:`` line governs it."""
    for single in SINGLE_MODULES:
        if module == single:
            return single
    parts = module.split(".")
    if parts[0] != "scanner":
        return parts[0]
    if module == "scanner.engine.model":
        return module  # the rule model: the vocabulary every layer from the facts up speaks
    return ".".join(parts[:2]) if len(parts) > 1 else ROOT


NOTHING = "nothing of vfio-scan"


def _declared(unit: str) -> set:
    """The units named on the ``May import:`` line of a unit's docstring: ``a, b, c.`` or ``nothing of vfio-scan.``"""
    path = MODULES[unit]
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    lines = [line for line in doc.splitlines() if line.startswith("May import:")]
    assert len(lines) == 1, f"{path.relative_to(REPO)}: its docstring needs one 'May import:' line"
    items = [item.strip() for item in lines[0].removeprefix("May import:").strip().rstrip(".").split(",")]
    if items == [NOTHING]:
        return set()
    unknown = [item for item in items if item not in UNITS]
    assert not unknown, f"{path.relative_to(REPO)}: 'May import:' names what is not a unit: {unknown}"
    return set(items)


UNITS = sorted({_unit(m) for m in MODULES} - {ROOT})


def test_every_unit_says_what_it_may_import():
    for unit in UNITS:
        _declared(unit)


@pytest.mark.parametrize("unit", UNITS)
def test_imports_follow_the_declared_direction(unit):
    allowed = _declared(unit) | {unit, ROOT}
    wrong = []
    for module, path in MODULES.items():
        if _unit(module) != unit:
            continue
        for line, name in _imports(path):
            target = _unit(name if name in MODULES else name.rsplit(".", 1)[0])
            if target not in allowed:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {name} ({target} is not on the "
                             f"'May import:' line of {unit})")
    assert not wrong, "\n".join(wrong)


def _graph():
    graph = {}
    for module, path in MODULES.items():
        targets = set()
        for _, name in _imports(path):
            target = name if name in MODULES else name.rsplit(".", 1)[0]
            if target in MODULES and target != module:
                targets.add(target)
        graph[module] = targets
    return graph


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
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


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_a_wrong_direction_import_is_caught(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("if TYPE_CHECKING:\n    import scanner.cli\ndef f():\n    from scanner.commands.scan import run\n")
    assert [name for _, name in _imports(source)] == ["scanner.commands.scan"]
    assert _unit("scanner.commands.scan") not in _declared("scanner.facts")


def test_modules_are_small():
    sizes = {str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
             for path in list(REPO.joinpath("scanner").rglob("*.py")) + list(REPO.joinpath("reports").rglob("*.py"))
             + list(REPO.joinpath("rules").rglob("*.py")) + list(REPO.joinpath("benchmarks").rglob("*.py"))}
    too_big = {path: lines for path, lines in sizes.items() if lines >= MAX_LINES and path not in OVERSIZE_ALLOWED}
    assert not too_big, f"modules of {MAX_LINES} lines or more: {too_big}"
    assert statistics.median(sizes.values()) < MAX_MEDIAN


def test_the_plugin_api_is_importable_from_the_package_root():
    from scanner import Evidence, Finding, Rule, Step, hookimpl
    from scanner.engine import model
    from scanner.engine.hookspecs import hookimpl as marker

    assert (Evidence, Finding, Rule, Step) == (model.Evidence, model.Finding, model.Rule, model.Step)
    assert hookimpl is marker
