"""The command line, run as a real subprocess."""

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples" / "dags"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline_core", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_dags_validate_examples():
    result = cli("dags", "validate", "--dags-folder", str(EXAMPLES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all valid" in result.stdout


def test_dags_validate_lists_every_error_and_exits_1(tmp_path):
    (tmp_path / "bad.yaml").write_text("tasks:\n  a: {retries: -1, depend_on: [b]}\n")
    (tmp_path / "worse.yaml").write_text("tasks: [\n")
    result = cli("dags", "validate", "--dags-folder", str(tmp_path))
    assert result.returncode == 1
    assert "bad.yaml:2: tasks.a.retries: must be ≥ 0" in result.stdout
    assert "did you mean 'depends_on'" in result.stdout
    assert "worse.yaml" in result.stdout and "invalid YAML" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_dags_list_json_and_env_folder():
    env = {"PIPELINE_CORE_DAGS_FOLDER": str(EXAMPLES), "PATH": "/usr/bin:/bin"}
    result = cli("dags", "list", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    ids = [row["dag_id"] for row in json.loads(result.stdout)]
    assert ids == sorted(ids) and "etl_daily" in ids


def test_dags_show_in_topological_order():
    result = cli("dags", "show", "etl_daily", "--dags-folder", str(EXAMPLES), "--format", "json")
    assert result.returncode == 0, result.stderr
    tasks = json.loads(result.stdout)["tasks"]
    order = [t["task_id"] for t in tasks]
    for t in tasks:
        for up in t["depends_on"]:
            assert order.index(up) < order.index(t["task_id"])
    table = cli("dags", "show", "etl_daily", "--dags-folder", str(EXAMPLES))
    assert table.stdout.splitlines()[1].split() == [
        "task_id",
        "type",
        "depends_on",
        "trigger_rule",
        "retries",
        "pool",
    ]


def test_dags_show_unknown_dag():
    result = cli("dags", "show", "nope", "--dags-folder", str(EXAMPLES))
    assert result.returncode == 1
    assert "no DAG 'nope'" in result.stderr


def test_dags_schema_prints_json_schema():
    result = cli("dags", "schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "pipeline-core DAG"


def test_no_command_prints_help_and_exits_2():
    result = cli()
    assert result.returncode == 2
    assert "usage" in result.stdout
