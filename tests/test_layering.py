"""Imports point one way: model (dag, state, errors) <- store <- engine/scheduler <- api, and
inside the engine, api and store the rooms have layers of their own."""

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
    "events": 0,
    "clock": 0,
    "credentials": 0,
    "client": 0,
    "store": 1,
    "metrics": 1,
    "exposition": 1,
    "engine": 2,
    "scheduler": 2,
    "history": 2,
    "retention": 2,
    "notify": 2,
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


#: Rooms inside a package, lowest first: a room may import its own and lower ones only.
#: The engine: pure core <- task execution <- executors (local, then workers and celery,
#: which never import each other) <- the shell (loop, runner, orchestrator, control ...).
SUBLAYERS: dict[str, dict[str, int]] = {
    "engine": {"core": 0, "tasks": 1, "executors": 2, "": 3},
    "engine.executors": {"workers": 0, "celery": 1, "": 1, "routing": 2},
    "api": {"transport": 0, "http": 0, "types": 0, "": 1, "openapi": 1, "routes": 2, "server": 3},
    # The PostgreSQL functions are DDL text that the shared migrations install.
    "store": {
        **{"types": 0, "claims": 0, "seq_waiter": 0, "notices": 0, "postgres.functions": 0},
        **{
            "parts": 1,
            "assets": 1,
            "credentials": 1,
            "accounts": 1,
            "dags": 1,
            "retention": 1,
            "base": 2,
            "feed": 2,
            "sql": 3,
            "": 3,
        },
        "sqlite": 4,
        "postgres": 4,
        "factory": 5,
    },
}


def sublayer(package: str, module: str) -> int | None:
    """The layer of ``module`` (dotted, within ``pipeline_core``) among the rooms of
    ``package``; ``None`` when it is not inside ``package``."""
    prefix = package + "."
    if not module.startswith(prefix):
        return None
    parts = module[len(prefix) :].split(".")
    if parts[-1] == "__init__":  # a package's face: it may name what its rooms hold
        return None
    rooms = SUBLAYERS[package]
    return rooms.get(".".join(parts[:2]), rooms.get(parts[0], rooms[""]))


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path):
    relative = path.relative_to(PACKAGE).with_suffix("")
    own = LAYERS[relative.parts[0]]
    for name in imports(path):
        target = layer_of(name)
        assert target is None or target <= own, f"{relative} imports {name}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_room_imports_a_higher_room_of_its_package(path):
    own_module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    for package in SUBLAYERS:
        own = sublayer(package, own_module)
        if own is None:
            continue
        for name in imports(path):
            target = sublayer(package, name.removeprefix("pipeline_core."))
            if name.startswith("pipeline_core.") and target is not None:
                assert target <= own, f"{own_module} imports {name}"


def test_the_worker_pool_knows_nothing_of_celery():
    """A Celery worker runs its tries in a worker pool of its own; never the other way."""
    for path in (PACKAGE / "engine" / "executors" / "workers").rglob("*.py"):
        for name in imports(path):
            assert "celery" not in name, f"{path.relative_to(PACKAGE)} imports {name}"


def test_every_top_level_module_has_a_layer():
    for path in PACKAGE.iterdir():
        if path.name.startswith("_") and path.name not in ("__init__.py", "__main__.py"):
            continue
        if path.suffix == ".py" or (path.is_dir() and path.name != "__pycache__"):
            assert path.stem in LAYERS, path
