"""Marking and running again one instance of a mapped task through the API, in-process and
against the OpenAPI document, over a real engine and SQLite store: the task follows its
instances, and bad, unknown and busy instances get the right 4xx."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.engine import Engine, EngineSettings
from pipeline_core.model import TriggerRequest
from pipeline_core.state import FINISHED_RUN_STATES
from pipeline_core.store import open_store
from tests import fixtures
from tests.api.conftest import serve
from tests.api.inprocess import AppClient
from tests.conftest import poll_until

DAG = """
dag_id: m
tasks:
  each:
    type: python
    callable: "tests.fixtures:fail_on"
    kwargs: {bad: 1}
    expand: {x: [0, 1, 2]}
  after: {type: noop, depends_on: [each]}
  slow:
    type: python
    callable: "tests.fixtures:wait_gate"
    expand: {name: [a]}
"""
BASE = "/api/v1/dags/m/runs/r/tasks"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[AppClient, Any]]:
    store = open_store(f"sqlite:///{tmp_path / 'ops.db'}")
    fixtures.reset()
    dag = load_dag_text(textwrap.dedent(DAG))
    engine = Engine(store, {"m": dag}, settings=EngineSettings(default_executor="thread")).start()
    server = serve(store, control=engine)
    yield AppClient(server), store
    fixtures.open_gate("a")
    server.stop()
    engine.stop(grace=0)
    store.close()


def call(client: AppClient, method: str, path: str, body: object = None) -> tuple[int, Any]:
    status, _, answer = client.request(method, path, body)
    return status, answer


def test_one_instance_is_marked_and_run_again(client: tuple[AppClient, Any]) -> None:
    app, store = client
    run = app.server.options.control.trigger(TriggerRequest("m", run_id="r"))
    poll_until(lambda: call(app, "GET", f"{BASE}/each")[1]["data"]["state"] == "failed")
    status, body = call(app, "PATCH", f"{BASE}/each/mapped/1", {"state": "success"})
    assert status == 200 and body["data"]["map_index"] == 1 and body["data"]["state"] == "success"
    assert call(app, "GET", f"{BASE}/each")[1]["data"]["state"] == "success"
    status, body = call(app, "POST", f"{BASE}/each/mapped/0/clear", {"include_downstream": True})
    assert status == 200 and body["data"]["task_ids"] == ["each", "after"]
    poll_until(lambda: call(app, "GET", f"{BASE}/after")[1]["data"]["state"] == "success")
    assert call(app, "GET", f"{BASE}/each/mapped/0")[1]["data"]["try_number"] == 2
    assert store.runs.get_run("m", run.run_id).state not in FINISHED_RUN_STATES  # slow waits


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("PATCH", "each/mapped/7", {"state": "success"}, 404, "no instance map_index 7"),
        ("PATCH", "each/mapped/-1", {"state": "success"}, 400, "map_index"),
        ("PATCH", "each/mapped/1000001", {"state": "success"}, 400, "map_index"),
        ("PATCH", "each/mapped/abc", {"state": "success"}, 400, "map_index"),
        ("PATCH", "each/mapped/0", {"state": "queued"}, 400, "state"),
        ("PATCH", "each/mapped/0", {}, 400, "state"),
        ("PATCH", "after/mapped/0", {"state": "success"}, 404, "no instance map_index 0"),
        ("POST", "each/mapped/9/clear", {}, 404, "no instance map_index 9"),
        ("POST", "each/mapped/0/clear", {"include_downstream": "yes"}, 400, "include_downstream"),
        ("POST", "each/mapped/0/clear", {"extra": 1}, 400, "extra"),
        ("POST", "slow/mapped/0/clear", {}, 409, "map index 0 of task 'slow' is running"),
    ],
)
def test_bad_unknown_and_busy_instances(
    client: tuple[AppClient, Any], method: str, path: str, body: object, status: int, message: str
) -> None:
    app, _ = client
    app.server.options.control.trigger(TriggerRequest("m", run_id="r"))
    poll_until(lambda: call(app, "GET", f"{BASE}/slow/mapped/0")[1]["data"]["state"] == "running")
    got, answer = call(app, method, f"{BASE}/{path}", body)
    assert got == status, answer
    assert message in answer["error"]["message"]
