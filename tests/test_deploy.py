"""The deployment example stays true: every unit's command line is one the CLI accepts."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from pipeline_core.cli import build_parser

DEPLOY = Path(__file__).parents[1] / "deploy"
VALUES = {
    "${PIPELINE_CORE_DB}": "postgresql://pipeline_core@db.example.com/pipeline_core",
    "${PIPELINE_CORE_DAGS_FOLDER}": "/srv/pipeline-core/dags",
    "${PIPELINE_CORE_API_TOKEN}": "secret",
    "${PIPELINE_CORE_BROKER}": "redis://redis.example.com:6379/0",
    "%i": "8080",
}


def exec_start(unit: Path) -> list[str]:
    line = next(x for x in unit.read_text().splitlines() if x.startswith("ExecStart="))
    for name, value in VALUES.items():
        line = line.replace(name, value)
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize(
    "unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name
)
def test_every_unit_runs_a_command_the_cli_accepts(unit):
    argv = exec_start(unit)
    assert argv[0].endswith("/pipeline-core")
    args = build_parser().parse_args(argv[1:])
    assert callable(args.handler)


def test_the_environment_example_names_every_variable_the_units_use():
    names = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    used = {
        name.strip("${}")
        for unit in (DEPLOY / "systemd").glob("*.service")
        for name in VALUES
        if name.startswith("$") and name in unit.read_text()
    }
    assert used <= names
