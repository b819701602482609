"""A DAG's concurrency key through the API: the DAG's answer states it, a ``skip_new``
trigger is a 409 naming the active run, a key the conf cannot render is a 400, and queued
runs of a full key wait (in-process, checked against the OpenAPI document)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_core.api.server import APIServer
from pipeline_core.api.types import APIServerOptions
from pipeline_core.engine import Engine
from pipeline_core.scheduler.sync import DagSync
from pipeline_core.store import open_store
from tests.api.inprocess import AppClient

DAGS = {
    "deploy": """
max_active_runs: 10
concurrency: {key: "{{ dag_run.conf.env }}", limit: 1, on_conflict: skip_new}
tasks:
  hold: {type: sensor, until: "2999-01-01T00:00:00Z", poke_interval: 60}
""",
    "builds": """
max_active_runs: 10
concurrency: {key: "{{ dag_run.conf.branch }}"}
tasks:
  hold: {type: sensor, until: "2999-01-01T00:00:00Z", poke_interval: 60}
""",
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[AppClient]:
    folder = tmp_path / "dags"
    folder.mkdir()
    for name, text in DAGS.items():
        (folder / f"{name}.yaml").write_text(text)
    store = open_store(f"sqlite:///{tmp_path / 'flow.db'}")
    engine = Engine(store).start()
    engine.set_dags(DagSync(store, folder).refresh())
    server = APIServer(APIServerOptions(store=store, port=0, control=engine)).start()
    yield AppClient(server)
    server.stop()
    engine.stop(grace=0)
    store.close()


def trigger(api: AppClient, dag_id: str, run_id: str, conf: dict[str, Any]) -> tuple[int, Any]:
    status, _, body = api.request("POST", f"/api/v1/dags/{dag_id}/runs",
                                  {"run_id": run_id, "conf": conf})  # fmt: skip
    return status, body


def test_skip_new_is_a_409_and_a_bad_key_a_400(api: AppClient) -> None:
    detail = api.request("GET", "/api/v1/dags/deploy")[2]["data"]
    assert detail["concurrency_key"] == {
        "key": "{{ dag_run.conf.env }}", "limit": 1, "on_conflict": "skip_new"
    }  # fmt: skip
    assert trigger(api, "deploy", "one", {"env": "prod"})[0] == 201
    status, body = trigger(api, "deploy", "two", {"env": "prod"})
    assert (
        status == 409
        and "run 'one' of DAG 'deploy' holds concurrency key 'prod'" in (body["error"]["message"])
    )
    assert trigger(api, "deploy", "three", {"env": "staging"})[0] == 201
    status, body = trigger(api, "deploy", "four", {"env": ["a"]})
    assert status == 400 and "must render to text, got list" in body["error"]["message"]
    status, body = trigger(api, "deploy", "five", {})
    assert status == 400 and "has no 'env'" in body["error"]["message"]


def test_queued_runs_of_a_full_key_wait(api: AppClient) -> None:
    assert trigger(api, "builds", "b1", {"branch": "main"})[1]["data"]["state"] == "running"
    assert trigger(api, "builds", "b2", {"branch": "main"})[1]["data"]["state"] == "queued"
    assert trigger(api, "builds", "f1", {"branch": "feat"})[1]["data"]["state"] == "running"
    assert api.request("DELETE", "/api/v1/dags/builds/runs/b1")[0] == 200
    assert api.request("GET", "/api/v1/dags/builds/runs/b2")[2]["data"]["state"] == "running"


def test_a_trigger_carries_a_priority_and_a_bad_one_is_refused(api: AppClient) -> None:
    status, body = trigger(api, "builds", "p1", {"branch": "x"})
    assert status == 201 and body["data"]["priority"] == 0
    status, _, body = api.request("POST", "/api/v1/dags/builds/runs",
                                  {"run_id": "p2", "conf": {"branch": "y"}, "priority": 7})  # fmt: skip
    assert status == 201 and body["data"]["priority"] == 7
    assert api.request("GET", "/api/v1/dags/builds/runs/p2")[2]["data"]["priority"] == 7
    for bad in (10**7, "high", 1.5):
        status, _, body = api.request("POST", "/api/v1/dags/builds/runs", {"priority": bad})
        assert status == 400 and "priority" in body["error"]["message"], bad
