"""Modules a reader can hold in their head: none over 400 lines, no function over 60 (benches excluded)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "trainer", "scraper", "web", "common")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _sources() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def test_no_module_over_400_lines():
    problems = [f"{path.relative_to(ROOT)}: {lines} lines" for path in _sources()
                if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    for problem in problems:
        print(problem)
    assert not problems, "\n".join(problems)


def test_no_function_over_60_lines():
    problems = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # from `def` to the last line of its body
                if lines > MAX_FUNCTION_LINES:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} is {lines} lines")
    for problem in problems:
        print(problem)
    assert not problems, "\n".join(problems)
