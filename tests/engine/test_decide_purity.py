"""The engine's decisions are pure: every module of ``engine/core/`` imports no store,
executor, clock, metrics, threads or I/O — only the domain, the DAG model and each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).parents[2] / "src" / "pipeline_core" / "engine" / "core"
MODULES = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")
ALLOWED = {
    "__future__",
    "collections",
    "collections.abc",
    "contextlib",
    "dataclasses",
    "datetime",
    "enum",
    "heapq",
    "itertools",
    "typing",
    "pipeline_core.dag.graph",
    "pipeline_core.dag.model",
    "pipeline_core.dag.templates",  # parsing and rendering a template string: no I/O
    "pipeline_core.dag.flow",  # rendering a run's concurrency key: no I/O
    "pipeline_core.errors",
    "pipeline_core.model",
    "pipeline_core.state",
    *(f"pipeline_core.engine.core.{name}" for name in MODULES),
}


def test_the_core_is_a_folder_of_several_modules():
    assert {"decide", "messages", "book", "slots"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_the_core_imports_only_pure_modules(module):
    tree = ast.parse((CORE / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported <= ALLOWED, f"{module} imports {sorted(imported - ALLOWED)}"
