"""DAG versions through the API: the list (newest first, the latest marked), one version's
text and its diff from another, a run's ``dag_version``, clears and retries that keep the
run's version or take the latest (``use_latest``), and bad hashes answered 400/404
(in-process, checked against the OpenAPI document)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline_core.api.server import APIServer
from pipeline_core.api.types import APIServerOptions
from pipeline_core.engine import Engine
from pipeline_core.scheduler.sync import DagSync
from pipeline_core.store import open_store
from tests.api.inprocess import AppClient
from tests.conftest import poll_until

V1 = "tasks:\n  a: {type: noop}\n  b: {type: noop, depends_on: [a]}\n"
V2 = "tasks:\n  a: {type: noop}\n  c: {type: noop, depends_on: [a]}\n"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[AppClient, Path, DagSync, Engine]]:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "flow.yaml").write_text(V1)
    store = open_store(f"sqlite:///{tmp_path / 'versions.db'}")
    engine = Engine(store).start()
    sync = DagSync(store, folder)
    engine.set_dags(sync.refresh())
    server = APIServer(APIServerOptions(store=store, port=0, control=engine)).start()
    yield AppClient(server), folder, sync, engine
    server.stop()
    engine.stop(grace=0)
    store.close()


def _finished(api: AppClient, run_id: str) -> dict:  # type: ignore[type-arg]
    path = f"/api/v1/dags/flow/runs/{run_id}"
    poll_until(lambda: api.request("GET", path)[2]["data"]["state"] == "success", 15)
    return api.request("GET", path)[2]["data"]  # type: ignore[no-any-return]


def test_versions_listed_read_diffed_and_runs_keep_theirs(setup) -> None:  # type: ignore[no-untyped-def]
    api, folder, sync, engine = setup
    api.request("POST", "/api/v1/dags/flow/runs", {"run_id": "r1"})
    first = _finished(api, "r1")["dag_version"]
    (folder / "flow.yaml").write_text(V2)
    engine.set_dags(sync.refresh())
    status, _, body = api.request("GET", "/api/v1/dags/flow/versions")
    assert status == 200 and body["meta"]["total"] == 2
    listed = body["data"]
    assert [v["is_latest"] for v in listed] == [True, False] and listed[1]["version"] == first
    latest = listed[0]["version"]
    status, _, body = api.request(
        "GET", f"/api/v1/dags/flow/versions/{first[:8]}?diff_from={latest}"
    )
    detail = body["data"]
    assert status == 200 and detail["source"] == V1 and detail["version"] == first
    assert "-  c: {type: noop, depends_on: [a]}" in detail["diff"]
    assert "+  b: {type: noop, depends_on: [a]}" in detail["diff"]
    # A clear keeps the run's version; use_latest takes the new one.
    status, _, body = api.request(
        "POST", "/api/v1/dags/flow/runs/r1/clear", {"task_ids": ["a"], "include_downstream": True}
    )
    assert status == 200 and body["data"]["task_ids"] == ["a", "b"]
    assert _finished(api, "r1")["dag_version"] == first
    status, _, body = api.request(
        "POST", "/api/v1/dags/flow/runs/r1/retry", {"task_ids": ["a"], "use_latest": True}
    )
    assert status == 200, body
    assert _finished(api, "r1")["dag_version"] == latest
    tasks = api.request("GET", "/api/v1/dags/flow/runs/r1/tasks")[2]["data"]
    assert {t["task_id"]: t["state"] for t in tasks} == {
        "a": "success",
        "b": "success",
        "c": "success",
    }
    # The file deleted: the DAG is inactive, its versions and runs stay readable.
    (folder / "flow.yaml").unlink()
    engine.set_dags(sync.refresh())
    assert api.request("GET", "/api/v1/dags/flow")[2]["data"]["is_active"] is False
    assert api.request("GET", "/api/v1/dags/flow/versions")[2]["meta"]["total"] == 2
    source = api.request("GET", f"/api/v1/dags/flow/versions/{first}")[2]["data"]["source"]
    assert source == V1
    assert api.request("GET", "/api/v1/dags/flow/runs/r1")[2]["data"]["dag_version"] == latest


def test_bad_and_unknown_versions(setup) -> None:  # type: ignore[no-untyped-def]
    api = setup[0]
    assert api.request("GET", "/api/v1/dags/flow/versions/abc")[0] == 400  # too short
    assert api.request("GET", "/api/v1/dags/flow/versions/zzzzzzzz")[0] == 400  # not hex
    status, _, body = api.request("GET", "/api/v1/dags/flow/versions/" + "0" * 64)
    assert status == 404 and "no version" in body["error"]["message"]
    assert api.request("GET", "/api/v1/dags/nope/versions")[0] == 404
    status, _, body = api.request("POST", "/api/v1/dags/flow/runs/x/retry", {"use_latest": "yes"})
    assert status == 400
