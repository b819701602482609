"""The command line, run as a real subprocess."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipeline_core.cli.common import wait_until_set
from tests.conftest import pipeline_core_process

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


def test_dags_test_of_a_mapped_dag_counts_the_instances(tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ("dags", "test", "partitions_mapped", "--dags-folder", str(EXAMPLES), "--db", db)
    result = cli(*args, "--conf", '{"count": 30}')
    assert result.returncode == 0, result.stdout + result.stderr
    assert "load    success (30 mapped: 30 success)" in result.stdout


def test_dags_test_shows_live_progress_and_a_summary(tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    result = cli("dags", "test", "etl_daily", "--dags-folder", str(EXAMPLES), "--db", db)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any("extract" in line and "queued → running" in line for line in lines)
    assert any(line.startswith("progress: 6/6") for line in lines)
    assert any(line.split()[:2] == ["load", "success"] for line in lines)
    assert any(line.split()[:2] == ["alert", "skipped"] for line in lines)
    run_id = next(
        line.split()[2].rstrip(":")
        for line in lines
        if "running → success" in line and " run " in line
    )
    logs = cli("tasks", "logs", "etl_daily", run_id, "extract", "--db", db)
    assert logs.returncode == 0, logs.stderr
    assert '"rows": 3' in logs.stdout
    missing = cli("tasks", "logs", "etl_daily", run_id, "nope", "--db", db)
    assert missing.returncode == 1 and "no task 'nope'" in missing.stderr


def test_dags_test_exit_1_on_failure_and_bad_conf(tmp_path):
    (tmp_path / "failing.yaml").write_text("tasks:\n  bad: {type: shell, command: 'exit 4'}\n")
    result = cli("dags", "test", "failing", "--dags-folder", str(tmp_path))
    assert result.returncode == 1
    assert "exited with code 4" in result.stdout
    bad_conf = cli("dags", "test", "failing", "--dags-folder", str(tmp_path), "--conf", "[1]")
    assert bad_conf.returncode == 1 and "--conf must be a JSON object" in bad_conf.stderr
    not_json = cli("dags", "test", "failing", "--dags-folder", str(tmp_path), "--conf", "{x")
    assert not_json.returncode == 1 and "not valid JSON" in not_json.stderr


def test_scheduler_runs_scheduled_dags_and_stops_on_sigterm(tmp_path):
    import signal
    import time

    from pipeline_core.store import open_store
    from pipeline_core.store.types import RunQuery

    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "minutely.yaml").write_text(
        "schedule: '* * * * *'\nstart_date: 2026-01-01\ntasks:\n  hello: {type: shell, command: 'echo hi'}\n"
    )
    db = f"sqlite:///{tmp_path / 'sched.db'}"
    process = pipeline_core_process(
        "scheduler",
        "--dags-folder",
        str(folder),
        "--db",
        db,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    store = open_store(db)
    try:
        deadline = time.monotonic() + 20
        runs = []
        while time.monotonic() < deadline:
            runs = store.runs.query_runs(RunQuery(dag_id="minutely", states=())).items
            if runs and runs[0].state.value == "success":
                break
            time.sleep(0.1)
        assert runs and runs[0].state.value == "success" and runs[0].run_type == "scheduled"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        store.close()
    assert process.returncode == 0, output
    assert "scheduler running: 1 DAG(s)" in output and "stopped" in output
    assert "Traceback" not in output


def test_a_signal_caught_by_another_thread_still_ends_the_wait():
    """Long-running commands wait in the main thread for SIGINT/SIGTERM; the kernel may hand
    the signal to any thread, and the main thread must still notice it."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGUSR1, lambda *_: stop.set())

    def signal_this_thread() -> None:
        time.sleep(0.1)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

    try:
        threading.Thread(target=signal_this_thread).start()
        started = time.monotonic()
        wait_until_set(stop)
        assert time.monotonic() - started < 5
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_engine_flags_are_checked_by_name():
    for args, message in [
        (["--workers", "0"], "argument --workers: must be at least 1, got 0"),
        (["--workers", "-3"], "argument --workers: must be at least 1, got -3"),
        (["--max-tasks-per-worker", "-1"], "argument --max-tasks-per-worker: must not be negative"),
        (["--max-workers", "x"], "argument --max-workers: expected a whole number"),
        (["--executor", "gpu"], "argument --executor: invalid choice"),
    ]:
        result = cli("dags", "test", "etl_daily", "--dags-folder", str(EXAMPLES), *args)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr


def test_a_pool_that_cannot_start_is_a_clear_error(tmp_path):
    (tmp_path / "broken_module.py").write_text("raise ImportError('missing driver')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    result = cli(
        "dags", "test", "etl_daily", "--dags-folder", str(EXAMPLES),
        "--worker-preload", "broken_module", env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "error: the worker pool cannot start: cannot preload 'broken_module'" in result.stderr
    assert "missing driver" in result.stderr


def test_dags_test_survives_a_task_that_kills_its_process_and_one_that_hangs(tmp_path):
    (tmp_path / "faults.yaml").write_text(
        "dag_id: faults\ntasks:\n"
        '  crash: {type: python, callable: "os:_exit", kwargs: {status: 3}}\n'
        '  hang: {type: python, callable: "tests.fixtures:spin", timeout: 1s}\n'
        '  fine: {type: shell, command: "echo fine"}\n'
    )
    started = time.monotonic()
    result = cli("dags", "test", "faults", "--dags-folder", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "worker exited with code 3" in result.stdout
    assert "timed out after 1s" in result.stdout
    assert time.monotonic() - started < 30


def test_version():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("pipeline-core 0.")


def test_a_missing_dags_folder_is_a_start_up_error(tmp_path):
    for command, extra in (("serve", ["--port", "0"]), ("scheduler", [])):
        result = cli(command, "--dags-folder", str(tmp_path / "nope"), "--db",
                     f"sqlite:///{tmp_path / 'x.db'}", *extra)  # fmt: skip
        assert result.returncode == 1
        assert "the DAGs folder" in result.stderr and "does not exist" in result.stderr


def test_serve_on_a_port_in_use_starts_nothing(tmp_path):
    from pipeline_core.store import open_store
    from pipeline_core.store.types import RunQuery

    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "often.yaml").write_text(
        "schedule: '* * * * *'\nstart_date: 2026-01-01\ncatchup: true\n"
        "tasks:\n  t: {type: shell, command: 'sleep 5'}\n"
    )
    db = tmp_path / "busy.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--dags-folder", str(folder), "--db", f"sqlite:///{db}",
                     "--port", str(port))  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    if db.exists():
        store = open_store(f"sqlite:///{db}")
        try:
            assert store.runs.query_runs(RunQuery()).total == 0
        finally:
            store.close()


def test_events_names_the_url_it_cannot_reach_and_gives_up():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    result = cli("events", "--server", f"http://127.0.0.1:{port}", "--max-tries", "2")
    assert result.returncode == 1
    assert f"error: cannot reach http://127.0.0.1:{port}/api/v1/events" in result.stderr
    assert "gave up after 2 tries" in result.stderr
