"""Conditional reads: strong ETags, ``If-None-Match`` → 304, and finished runs' answers kept
until an event of their run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pipeline_core.api.server import APIServer
from pipeline_core.api.types import APIServerOptions
from pipeline_core.model import DagRun, TaskSpec
from pipeline_core.state import RunState
from pipeline_core.store import open_store
from pipeline_core.store.types import DagRecord
from tests.api.inprocess import AppClient

RUN = "/api/v1/dags/etl/runs/r1"


@pytest.fixture
def store(tmp_path):  # type: ignore[no-untyped-def]
    created = open_store(f"sqlite:///{tmp_path / 'api.db'}")
    created.dags.upsert_dag(DagRecord("etl", task_count=2))
    run = DagRun("etl", "r1", RunState.QUEUED, "manual", datetime(2026, 1, 1, tzinfo=UTC))
    created.runs.create_run(run, [TaskSpec("a"), TaskSpec("b")])
    created.runs.transition_run("etl", "r1", RunState.QUEUED, RunState.RUNNING)
    yield created
    created.close()


@pytest.fixture
def server(store) -> Iterator[APIServer]:  # type: ignore[no-untyped-def]
    started = APIServer(APIServerOptions(store=store, port=0)).start()
    yield started
    started.stop()


@pytest.fixture
def client(server) -> AppClient:  # type: ignore[no-untyped-def]
    return AppClient(server)


class Counting:
    """Counts the store's task-instance reads (what rendering a run's answers costs)."""

    def __init__(self, store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        self.calls = 0
        original = store.tasks.query_task_instances

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(store.tasks, "query_task_instances", counted)


@pytest.mark.parametrize(
    "path", ["/api/v1/dags", "/api/v1/dags/etl", RUN, f"{RUN}/tasks", "/api/v1/pools"]
)
def test_every_get_answer_has_a_strong_etag_and_a_match_is_a_304(client, path):
    status, headers, body = client.request("GET", path)
    assert status == 200
    etag = headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    status, headers, body = client.request("GET", path, headers={"If-None-Match": etag})
    assert (status, body, headers["ETag"]) == (304, b"", etag)
    for listed in (f'"other", {etag}', f"W/{etag}", "*"):
        assert client.request("GET", path, headers={"If-None-Match": listed})[0] == 304
    assert client.request("GET", path, headers={"If-None-Match": '"other"'})[0] == 200
    status, headers, _ = client.request("HEAD", path, headers={"If-None-Match": etag})
    assert status == 304


def test_the_etag_changes_with_what_the_answer_shows(client, store):
    _, headers, _ = client.request("GET", "/api/v1/dags/etl")
    assert client.request("PATCH", "/api/v1/dags/etl", {"is_paused": True})[0] == 200
    status, changed, _ = client.request(
        "GET", "/api/v1/dags/etl", headers={"If-None-Match": headers["ETag"]}
    )
    assert status == 200 and changed["ETag"] != headers["ETag"]


def test_a_finished_runs_answers_are_kept_until_an_event_of_that_run(client, store, monkeypatch):
    counting = Counting(store, monkeypatch)
    client.request("GET", f"{RUN}/tasks")
    client.request("GET", f"{RUN}/tasks")
    assert counting.calls == 2  # running: rendered every time
    store.runs.transition_run("etl", "r1", RunState.RUNNING, RunState.SUCCESS)
    first = client.request("GET", f"{RUN}/tasks")
    etag = first[1]["ETag"]
    for _ in range(5):
        status, headers, body = client.request("GET", f"{RUN}/tasks")
        assert (status, headers["ETag"], body) == (200, etag, first[2])
    assert client.request("GET", f"{RUN}/tasks", headers={"If-None-Match": etag})[0] == 304
    assert counting.calls == 3  # rendered once since it finished
    store.runs.transition_run("etl", "r1", RunState.SUCCESS, RunState.QUEUED)  # as a retry does
    status, headers, body = client.request("GET", f"{RUN}/tasks", headers={"If-None-Match": etag})
    assert counting.calls == 4
    assert status == 304 or headers["ETag"] != etag  # the same tasks may still show the same
    _, _, detail = client.request("GET", RUN)
    assert detail["data"]["state"] == "queued"


def test_a_run_of_another_dag_does_not_drop_kept_answers(client, store, monkeypatch):
    store.runs.transition_run("etl", "r1", RunState.RUNNING, RunState.SUCCESS)
    client.request("GET", RUN)
    counting = Counting(store, monkeypatch)
    store.dags.upsert_dag(DagRecord("other", task_count=1))
    other = DagRun("other", "r1", RunState.QUEUED, "manual", datetime(2026, 1, 1, tzinfo=UTC))
    store.runs.create_run(other, [TaskSpec("a")])
    client.request("GET", RUN)
    assert counting.calls == 0


def test_unknown_runs_are_still_404(client):
    status, _, body = client.request("GET", "/api/v1/dags/etl/runs/nope/tasks")
    assert status == 404 and body["error"]["code"] == "not_found"
