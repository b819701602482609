"""Dynamic task mapping through ``pipeline-core serve`` and real clients: a run mapped over
its conf, its instances paged, marked and cleared with ``requests`` and the command line,
and a ``kill -9`` of the server in the middle of a 5,000-instance run — after a restart,
exactly the expected instances exist, each ran, none twice at once, and the reducer saw
them all."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from pipeline_core.state import TaskState
from pipeline_core.store import open_store
from pipeline_core.store.types import TaskInstanceQuery
from tests.conftest import poll_until
from tests.test_remote_cli import cli
from tests.test_serve_faults import Server, write_dag

pytestmark = pytest.mark.slow
FILES = """
dag_id: files
tasks:
  load:
    type: python
    callable: "tests.fixtures:fail_on"
    expand: {x: "{{ dag_run.conf.xs }}"}
    kwargs: {bad: 2}
  total:
    type: python
    callable: "tests.fixtures:total"
    depends_on: [load]
    trigger_rule: all_done
    kwargs: {values: "{{ xcom.load.return_value }}"}
"""


def api(server: Server, method: str, path: str, **kw: Any) -> Any:
    answer = requests.request(
        method, f"http://127.0.0.1:{server.port}/api/v1{path}", timeout=30, **kw
    )
    return answer.status_code, answer.json()


def test_instances_are_paged_marked_and_cleared_over_http_and_the_command_line(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "dags"
    write_dag(folder, FILES, "files")
    server = Server(f"sqlite:///{tmp_path / 'm.db'}", folder, tmp_path / "serve.log")
    try:
        status, body = api(
            server, "POST", "/dags/files/runs", json={"conf": {"xs": [1, 2, 3, 4]}, "run_id": "r"}
        )
        assert status in (200, 201), body
        status, body = api(server, "GET", "/dags/files/runs/r/wait?timeout=60")
        assert status == 200 and body["data"]["state"] == "success"  # total runs all_done
        runs = "/dags/files/runs/r/tasks"
        status, body = api(server, "GET", f"{runs}/load")
        assert body["data"]["state"] == "failed"
        assert body["data"]["mapped"]["states"] == {"success": 3, "failed": 1}
        status, body = api(server, "GET", f"{runs}/total/xcom")
        assert body["data"][0]["value"] == 1 + 3 + 4  # the instances that pushed a value
        status, body = api(server, "GET", f"{runs}/load/mapped?state=failed")
        assert [ti["map_index"] for ti in body["data"]] == [1]
        status, body = api(server, "PATCH", f"{runs}/load/mapped/1", json={"state": "success"})
        assert status == 200 and body["data"]["state"] == "success"
        status, body = api(server, "GET", f"{runs}/load")
        assert body["data"]["state"] == "success"  # the task follows its instances
        status, body = api(server, "PATCH", f"{runs}/load/mapped/1", json={"state": "running"})
        assert status == 400
        status, body = api(server, "PATCH", f"{runs}/load/mapped/9", json={"state": "failed"})
        assert status == 404 and "map_index 9" in body["error"]["message"]
        status, body = api(server, "POST", f"{runs}/load/mapped/0/clear", json={})
        assert status == 200 and body["data"]["task_ids"] == ["load", "total"]
        status, body = api(server, "GET", "/dags/files/runs/r/wait?timeout=60")
        assert body["data"]["state"] == "success"
        status, body = api(server, "GET", f"{runs}/load/mapped/0")
        assert body["data"]["try_number"] == 2 and body["data"]["state"] == "success"
        status, body = api(server, "POST", f"{runs}/load/mapped/0/clear", json={"nope": 1})
        assert status == 400
        url = f"http://127.0.0.1:{server.port}"
        done = cli(url, "tasks", "mark", "files", "r", "load", "failed", "--map-index", "3")
        assert done.returncode == 0 and "load[3] is failed" in done.stdout, done.stderr
        done = cli(url, "tasks", "clear", "files", "r", "load", "--map-index", "3")
        assert done.returncode == 0 and "cleared: load, total" in done.stdout, done.stderr
        status, body = api(server, "GET", "/dags/files/runs/r/wait?timeout=60")
        assert body["data"]["state"] == "success"
        done = cli(url, "tasks", "clear", "files", "r", "load", "--map-index", "7")
        assert done.returncode != 0 and "no instance map_index 7" in done.stderr
    finally:
        server.stop()


BIG = """
dag_id: big
concurrency: 64
tasks:
  make: {type: python, callable: "tests.fixtures:numbers", kwargs: {n: 5000}}
  each:
    type: python
    callable: "tests.fixtures:record_call"
    depends_on: [make]
    kwargs: {path: "CALLS"}
    expand: {x: "{{ xcom.make.return_value }}"}
    retries: 1
  total:
    type: python
    callable: "tests.fixtures:total"
    depends_on: [each]
    kwargs: {values: "{{ xcom.each.return_value }}"}
"""


def test_kill_9_in_the_middle_of_a_5000_instance_run_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls.txt"
    folder = tmp_path / "dags"
    write_dag(folder, BIG.replace("CALLS", str(calls)), "big")
    db = f"sqlite:///{tmp_path / 'big.db'}"
    log = tmp_path / "serve.log"
    server = Server(db, folder, log, "--max-workers", "8")
    status, body = api(server, "POST", "/dags/big/runs", json={"run_id": "r"})
    assert status in (200, 201), body
    poll_until(lambda: calls.exists() and calls.read_text().count("\n") >= 500, timeout=60)
    server.kill_group()
    assert calls.read_text().count("\n") < 5000  # killed in the middle of the run
    server = Server(db, folder, log, "--max-workers", "8")
    try:
        status, body = api(server, "GET", "/dags/big/runs/r/wait?timeout=240")
        assert status == 200 and body["data"]["state"] == "success", body
    finally:
        server.stop()
    store = open_store(db)
    try:
        page = store.tasks.query_task_instances(
            TaskInstanceQuery(dag_id="big", run_id="r", task_id="each", mapped=True, limit=10_000)
        )
        listed = page.items
        assert [ti.map_index for ti in listed] == list(range(5000))
        assert {ti.state for ti in listed} == {TaskState.SUCCESS}
        made = Counter(int(line) for line in calls.read_text().split())
        assert set(made) == set(range(5000))
        for ti in listed:  # a call per try at most: none ran without a try of its own
            assert made[ti.map_index] <= ti.try_number <= 2, ti
        total = store.task_data.get_xcom(
            __import__("pipeline_core.model", fromlist=["TaskKey"]).TaskKey("big", "r", "total"),
            "return_value",
        )
        assert total is not None and total.value == sum(range(5000))
    finally:
        store.close()
