"""The instances of a mapped task through the API (in-process, every answer checked against
the OpenAPI document): the run's task list shows the mapped task once with counts by
state, its instances page by state, and one instance answers with its own tries, XCom and
log. The instances are written to a real SQLite store as the engine writes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_core.client import Client
from pipeline_core.model import ExpandTask, TaskChange, TaskKey
from pipeline_core.state import TaskState
from pipeline_core.store import open_store
from pipeline_core.store.base import Store
from tests.api.conftest import serve
from tests.api.inprocess import AppClient
from tests.store.helpers import key, new_run
from tests.test_remote_cli import cli

BASE = "/api/v1/dags/etl/runs/r1/tasks"


def instance(index: int) -> TaskKey:
    return TaskKey("etl", "r1", "b", index)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'mapped.db'}")
    new_run(opened)
    opened.runs.apply([ExpandTask(key("b"), 250, max_tries=2)])
    opened.tasks.transition_tasks(
        [TaskChange(instance(i), TaskState.QUEUED, TaskState.RUNNING, try_number=1) for i in (3, 7)]
    )
    opened.tasks.transition_tasks(
        [
            TaskChange(instance(3), TaskState.RUNNING, TaskState.SUCCESS),
            TaskChange(instance(7), TaskState.RUNNING, TaskState.FAILED, error="bad row 7"),
        ]
    )
    opened.task_data.set_xcom(instance(3), "return_value", {"rows": 3})
    opened.task_data.append_log(instance(7), 1, "instance seven\n")
    yield opened
    opened.close()


@pytest.fixture
def client(store: Store) -> Iterator[AppClient]:
    server = serve(store)
    yield AppClient(server)
    server.stop()


def get(client: AppClient, path: str) -> tuple[int, Any]:
    status, _, body = client.request("GET", path)
    return status, body


def test_the_task_list_shows_a_mapped_task_once_with_its_counts(client: AppClient) -> None:
    status, body = get(client, BASE)
    assert status == 200 and body["meta"]["total"] == 3
    rows = {t["task_id"]: t for t in body["data"]}
    assert [t["map_index"] for t in body["data"]] == [-1, -1, -1]
    assert rows["b"]["mapped"] == {
        "count": 250,
        "states": {"queued": 248, "success": 1, "failed": 1},
    }
    assert "mapped" not in rows["a"]
    run = get(client, "/api/v1/dags/etl/runs/r1")[1]["data"]
    assert [t["task_id"] for t in run["task_instances"]] == ["a", "b", "c"]
    assert run["task_instances"][1]["mapped"] == rows["b"]["mapped"]


def test_instances_page_in_index_order_and_by_state(client: AppClient) -> None:
    status, body = get(client, f"{BASE}/b/mapped?limit=100&offset=200")
    assert status == 200 and body["meta"]["total"] == 250
    assert [t["map_index"] for t in body["data"]] == list(range(200, 250))
    failed = get(client, f"{BASE}/b/mapped?state=failed")[1]
    assert [(t["map_index"], t["error"]) for t in failed["data"]] == [(7, "bad row 7")]
    done = get(client, f"{BASE}/b/mapped?state=success,failed")[1]
    assert [t["map_index"] for t in done["data"]] == [3, 7]
    assert get(client, f"{BASE}/a/mapped")[1]["data"] == []  # not mapped: no instances


def test_one_instance_has_its_own_tries_xcom_and_log(client: AppClient) -> None:
    status, body = get(client, f"{BASE}/b/mapped/7")
    assert status == 200
    assert (body["data"]["map_index"], body["data"]["state"]) == (7, "failed")
    assert [(t["try_number"], t["state"], t["error"]) for t in body["data"]["tries"]] == [
        (1, "failed", "bad row 7")
    ]
    assert get(client, f"{BASE}/b")[1]["data"]["tries"] == []  # the task's own row: no try
    xcom = get(client, f"{BASE}/b/mapped/3/xcom")[1]["data"]
    assert [(x["key"], x["value"]) for x in xcom] == [("return_value", {"rows": 3})]
    assert get(client, f"{BASE}/b/mapped/7/xcom")[1]["data"] == []
    log = get(client, f"{BASE}/b/mapped/7/logs")[1]["data"]
    assert (log["try_number"], log["text"]) == (1, "instance seven\n")


def test_bad_and_unknown_instances(client: AppClient) -> None:
    for path, status, words in (
        (f"{BASE}/b/mapped/250", 404, "map_index 250"),
        (f"{BASE}/b/mapped/-1", 400, "map_index"),
        (f"{BASE}/b/mapped/x", 400, "map_index"),
        (f"{BASE}/ghost/mapped", 404, "ghost"),
        (f"{BASE}/b/mapped?state=lost", 400, "state"),
        (f"{BASE}/b/mapped/1/logs?try_number=3", 404, "no try 3"),
    ):
        got, body = get(client, path)
        assert got == status, (path, body)
        assert words in body["error"]["message"], (path, body)


def test_the_client_and_the_command_line_reach_one_instance(store: Store, tmp_path: Path) -> None:
    server = serve(store)
    url = f"http://127.0.0.1:{server.port}"
    try:
        with Client(url) as api:
            failed = api.tasks.mapped("etl", "r1", "b", state=["failed"])
            assert [t["map_index"] for t in failed] == [7]
            assert len(api.tasks.mapped("etl", "r1", "b", limit=10, offset=245)) == 5
            assert api.tasks.get("etl", "r1", "b", map_index=7)["error"] == "bad row 7"
            xcom = api.tasks.xcom("etl", "r1", "b", map_index=3)
            assert xcom[0]["value"] == {"rows": 3}
            assert api.tasks.log("etl", "r1", "b", map_index=7)["text"] == "instance seven\n"
        remote = cli(url, "tasks", "logs", "etl", "r1", "b", "--map-index", "7")
        assert remote.returncode == 0 and remote.stdout == "instance seven\n", remote.stderr
        missing = cli(url, "tasks", "logs", "etl", "r1", "b", "--map-index", "900")
        assert missing.returncode == 3 and "no instance map_index 900" in missing.stderr
    finally:
        server.stop()
    local = cli(
        None,
        "tasks",
        "logs",
        "etl",
        "r1",
        "b",
        "--map-index",
        "7",
        "--db",
        f"sqlite:///{tmp_path / 'mapped.db'}",
    )
    assert local.returncode == 0 and local.stdout == "instance seven\n", local.stderr
