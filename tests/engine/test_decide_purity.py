"""The engine's decisions are pure: the modules of its core import no store, executor, clock,
metrics, threads or I/O — only the domain, the DAG model and each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).parents[2] / "src" / "pipeline_core" / "engine"
CORE = ("decide", "deciding", "decide_runs", "decide_marks", "decide_tries", "book", "slots", "tracker", "pools", "messages", "jobs")  # fmt: skip
ALLOWED = {
    "__future__",
    "collections",
    "collections.abc",
    "dataclasses",
    "datetime",
    "enum",
    "heapq",
    "itertools",
    "typing",
    "pipeline_core.dag.graph",
    "pipeline_core.dag.model",
    "pipeline_core.errors",
    "pipeline_core.model",
    "pipeline_core.state",
    *(f"pipeline_core.engine.{name}" for name in CORE),
}


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_only_pure_modules(module):
    tree = ast.parse((ENGINE / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported <= ALLOWED, f"{module} imports {sorted(imported - ALLOWED)}"
