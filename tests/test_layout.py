"""The layout keeps the architecture visible (docs/development.md, "Layout").

Read from the package's source, as a newcomer would read it: three ways in
(``http/``, ``hooks/``, ``background/``) over one core (``operations/``,
``rooms/``, ``journal/``, ``matrix/``), on the base modules (config, metrics,
the version check and the Synapse adapter), wired together by ``module.py``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

# No database here: the same on SQLite and PostgreSQL (tox -e postgres
# skips it).
pytestmark = pytest.mark.no_database

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "synapse_breakout"
#: Each group's rank: a module imports from its own group or lower ones only.
RANKS = {
    "base": 0,
    "matrix": 1,
    "journal": 2,
    "rooms": 3,
    "operations": 4,
    "http": 5,
    "hooks": 5,
    "background": 5,
    "module": 6,
}
BASE = {"config", "metrics", "synapse_version", "synapse_adapter"}
#: The statements that only journal/ (the module's tables) and the adapter
#: (Synapse's tables, a Synapse internal) may hold.
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT INTO|UPDATE\s+\w+\s+SET|DELETE FROM)\b")


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def group(name: str) -> str:
    """The layout group of a module: ``matrix``, ``journal``... or ``base``."""
    parts = name.split(".")
    if len(parts) == 1 or parts[1] in ("__init__", "module"):
        return "module"
    return "base" if parts[1] in BASE else parts[1]


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of each import of the package in ``path``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "synapse_breakout":
                for alias in node.names:
                    yield node.lineno, f"synapse_breakout.{alias.name}"
            elif node.module.startswith("synapse_breakout."):
                yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("synapse_breakout."):
                    yield node.lineno, alias.name


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for _, target in imports(path):
            # "from synapse_breakout.matrix import notices" names a module.
            edges[name].add(target if target in known else target.rpartition(".")[0])
    return edges


def test_every_import_goes_down_or_sideways_within_a_group() -> None:
    wrong = []
    for name, path in modules().items():
        here = group(name)
        for line, target in imports(path):
            there = group(target)
            if name == "synapse_breakout" or here == there:
                continue
            if RANKS[there] >= RANKS[here]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {here} -> {there}")
    assert wrong == []


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_sizes_read_as_one_job() -> None:
    """No module over 450 lines, class over 350, function over 60."""
    too_big = []
    for name, path in modules().items():
        source = path.read_text()
        if source.count("\n") > 450:
            too_big.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno:
                length = node.end_lineno - node.lineno
                if length > 350:
                    too_big.append(f"{name}.{node.name}: a class of {length} lines")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    too_big.append(f"{name}.{node.name}: {length} lines")
    assert too_big == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_sql_lives_under_the_journal(name: str) -> None:
    """SQL on the module's tables in journal/ only; on Synapse's tables in the
    adapter only (they are a Synapse internal)."""
    if group(name) == "journal" or name.endswith("synapse_adapter"):
        return
    source = modules()[name].read_text()
    found = [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and SQL.search(node.value)
    ]
    assert found == [], f"{name}: SQL at lines {found}"
    assert "run_db_interaction" not in source, name


def test_development_md_maps_every_module() -> None:
    """docs/development.md names every module, so the map stays true."""
    text = (ROOT / "docs" / "development.md").read_text()
    missing = [
        str(path.relative_to(PACKAGE))
        for path in modules().values()
        if path.name != "__init__.py"
        and f"`{path.relative_to(PACKAGE).as_posix()}`" not in text
    ]
    assert missing == []
