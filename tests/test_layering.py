"""Imports point one way: model (dag, state, errors) <- store <- engine/scheduler <- api."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "pipeline_core"
LAYERS = {
    "_gc": 0,
    "_version": 0,
    "errors": 0,
    "state": 0,
    "dag": 0,
    "model": 0,
    "clock": 0,
    "client": 0,
    "store": 1,
    "metrics": 1,
    "exposition": 1,
    "engine": 2,
    "celery_executor": 2,
    "scheduler": 2,
    "history": 2,
    "api": 3,
    "ui": 3,
    "cli": 4,
    "__main__": 4,
    "__init__": 4,
}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "pipeline_core":
        return None
    return LAYERS.get(parts[1] if len(parts) > 1 else "__init__")


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path):
    relative = path.relative_to(PACKAGE).with_suffix("")
    own = LAYERS[relative.parts[0]]
    for name in imports(path):
        target = layer_of(name)
        assert target is None or target <= own, f"{relative} imports {name}"


def test_every_top_level_module_has_a_layer():
    for path in PACKAGE.iterdir():
        if path.name.startswith("_") and path.name not in ("__init__.py", "__main__.py"):
            continue
        if path.suffix == ".py" or (path.is_dir() and path.name != "__pycache__"):
            assert path.stem in LAYERS, path
