"""Every test under tests/unit carries the `unit` marker, so `pytest -m unit` (make test-unit) runs it.

Markers are not applied by folder: tests/conftest.py only orders the tiers by the markers a test already has
(an unmarked test counts as integration), so a module that forgets `pytestmark = pytest.mark.unit` silently
drops out of the unit run and moves behind it in `make test`. A module may instead mark each test (one that
mixes in a loopback integration test does); then every test must name its tier.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

UNIT_TESTS = Path(__file__).resolve().parent
TIERS = frozenset({"unit", "integration", "e2e", "security", "chaos", "chaos_fast", "browser"})


def _marker_tier(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """`pytest.mark.<tier>` (or a name bound to one at module level) -> the tier."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "mark"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "pytest"
    ):
        return node.attr if node.attr in TIERS else None
    return None


def _assignments(module: ast.Module) -> list[tuple[str, ast.expr]]:
    found: list[tuple[str, ast.expr]] = []
    for statement in module.body:
        if isinstance(statement, ast.Assign):
            found += [(t.id, statement.value) for t in statement.targets if isinstance(t, ast.Name)]
        elif isinstance(statement, ast.AnnAssign) and statement.value and isinstance(statement.target, ast.Name):
            found.append((statement.target.id, statement.value))
    return found


def unmarked_tests(source: str) -> list[str]:
    """The tests of a module without a tier: all of them when neither the module nor the test names one."""
    module = ast.parse(source)
    assignments = _assignments(module)
    aliases = {name: tier for name, value in assignments if (tier := _marker_tier(value, {}))}
    for name, value in assignments:
        if name == "pytestmark":
            values = value.elts if isinstance(value, ast.List | ast.Tuple) else [value]
            if "unit" in {_marker_tier(element, aliases) for element in values}:
                return []
    tests = [
        node
        for node in module.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.name.startswith(("test_", "Test"))
    ]
    return [node.name for node in tests if not any(_marker_tier(d, aliases) for d in node.decorator_list)]


def test_the_check_reads_the_spellings_in_use() -> None:
    assert unmarked_tests("import pytest\npytestmark = pytest.mark.unit\ndef test_a(): ...\n") == []
    assert unmarked_tests("pytestmark = [pytest.mark.unit, pytest.mark.skipif(True, reason='x')]\n") == []
    assert unmarked_tests("pytestmark = pytest.mark.integration\ndef test_a(): ...\n") == ["test_a"]
    assert unmarked_tests("def test_a() -> None:\n    pytestmark = pytest.mark.unit\n") == ["test_a"]
    per_test = "unit = pytest.mark.unit\n@unit\ndef test_a(): ...\n@pytest.mark.integration\nasync def test_b(): ...\n"
    assert unmarked_tests(per_test) == []
    assert unmarked_tests(per_test + "def test_c(): ...\n") == ["test_c"]


def test_every_unit_test_carries_a_tier_marker() -> None:
    modules = sorted(UNIT_TESTS.rglob("test_*.py"))
    assert len(modules) > 100  # the folder, not an empty glob
    unmarked = {
        str(module.relative_to(UNIT_TESTS)): names
        for module in modules
        if (names := unmarked_tests(module.read_text("utf-8")))
    }
    assert unmarked == {}, f"add `pytestmark = pytest.mark.unit` to these modules: {unmarked}"
