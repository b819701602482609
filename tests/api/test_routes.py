"""Runs, tasks, XCom, logs, stats, metrics and pools through the API, with a real engine
(``system``: tests/api/engine_system.py)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pipeline_core.dag.bag import load_folder
from pipeline_core.engine.remote import RemoteControl
from tests.api.engine_system import trigger
from tests.conftest import poll_until


class _RemoteRunner(RemoteControl):
    """A scheduler's runner in the API's process: commands go to the engine elsewhere."""

    def set_dags(self, dags: object) -> None:
        pass


def test_trigger_returns_the_run_and_it_succeeds(system):
    status, headers, body = trigger(
        system, "etl", {"conf": {"k": "v"}, "run_id": "first", "note": "from CI"}
    )
    assert status == 201
    assert headers["Location"] == "/api/v1/dags/etl/runs/first"
    assert body["data"]["run_id"] == "first" and body["meta"] == {"dag_is_paused": False}
    run = system.wait_state("etl", "first", {"success"})
    assert run["conf"] == {"k": "v"} and run["note"] == "from CI"
    assert [t["state"] for t in run["task_instances"]] == ["success", "success"]
    xcom = system.client.request("GET", "/api/v1/dags/etl/runs/first/tasks/load/xcom")[2]["data"]
    assert [(e["key"], e["value"]) for e in xcom] == [("return_value", 4)]
    assert (
        system.client.request("GET", "/api/v1/dags/etl/runs/first/tasks/load/xcom?key=nope")[2][
            "data"
        ]
        == []
    )
    logs = system.client.request(
        "GET", "/api/v1/dags/etl/runs/first/tasks/extract/logs?try_number=1"
    )[2]["data"]
    assert '"rows": 3' in logs["text"] and logs["next_offset"] == logs["size"]
    tail = system.client.request(
        "GET", f"/api/v1/dags/etl/runs/first/tasks/extract/logs?offset={logs['size'] - 5}"
    )[2]
    assert len(tail["data"]["text"]) == 5
    detail = system.client.request("GET", "/api/v1/dags/etl/runs/first/tasks/extract")[2]["data"]
    assert [t["state"] for t in detail["tries"]] == ["success"]
    tasks = system.client.request("GET", "/api/v1/dags/etl/runs/first/tasks")[2]
    assert [t["task_id"] for t in tasks["data"]] == ["extract", "load"] and tasks["meta"][
        "total"
    ] == 2
    grid = system.client.request("GET", "/api/v1/dags/etl/grid?limit=5")[2]["data"]
    assert grid[0] == system.client.request("GET", "/api/v1/dags/etl/runs/first")[2]["data"]
    assert system.client.request("GET", "/api/v1/dags/etl/grid?limit=0")[0] == 400
    assert system.client.request("GET", "/api/v1/dags/ghost/grid")[0] == 404


def test_trigger_errors(system):
    trigger(system, "etl", {"run_id": "dup"})
    assert trigger(system, "etl", {"run_id": "dup"})[0] == 409
    assert trigger(system, "ghost")[0] == 404
    for body, message in (
        ({"conf": [1]}, "'conf' must be a JSON object"),
        ({"conf": "x"}, "'conf' must be a JSON object"),
        ({"run_id": "bad id"}, "'run_id' must be an id"),
        ({"logical_date": "yesterday"}, "'logical_date': invalid date"),
        ({"note": 5}, "'note' must be a string"),
        ({"colour": "red"}, "unknown field(s) colour"),
    ):
        status, _, answer = trigger(system, "etl", body)
        assert status == 400 and message in answer["error"]["message"], answer
    assert system.client.request("GET", "/api/v1/dags/etl/runs")[2]["meta"]["total"] == 1


def test_trigger_on_a_paused_dag_queues_the_run(system):
    system.client.request("PATCH", "/api/v1/dags/etl", {"is_paused": True})
    status, _, body = trigger(system, "etl", {"run_id": "waits"})
    assert status == 201 and body["data"]["state"] == "queued"
    assert body["meta"]["dag_is_paused"] is True and "paused" in body["meta"]["message"]
    system.client.request("PATCH", "/api/v1/dags/etl", {"is_paused": False})
    system.wait_state("etl", "waits", {"success"})


def test_list_runs_with_filters_and_order(system):
    for i in range(3):
        trigger(system, "etl", {"run_id": f"r{i}", "logical_date": f"2026-02-0{i + 1}T00:00:00Z"})
    for i in range(3):
        system.wait_state("etl", f"r{i}", {"success"})
    trigger(system, "slow", {"run_id": "s"})
    system.client.request("DELETE", "/api/v1/dags/slow/runs/s")

    def ids(query: str) -> list[str]:
        status, _, body = system.client.request("GET", f"/api/v1/dags/etl/runs?{query}")
        assert status == 200, body
        return [r["run_id"] for r in body["data"]]

    assert ids("") == ["r2", "r1", "r0"]
    assert ids("order_by=logical_date") == ["r0", "r1", "r2"]
    assert ids("state=success&state=failed") == ["r2", "r1", "r0"]
    assert ids("state=failed,cancelled") == []
    assert ids("logical_date_gte=2026-02-02T00:00:00Z&logical_date_lte=2026-02-02T23:00:00Z") == [
        "r1"
    ]
    assert ids("run_type=manual&limit=1&offset=1") == ["r1"]
    assert ids("order_by=-duration")[0] in {"r0", "r1", "r2"}
    for query, message in (
        ("state=sleeping", "'state' must be one of queued, running"),
        ("order_by=colour", "'order_by' must be one of logical_date, -logical_date"),
        ("logical_date_gte=not-a-date", "invalid date"),
        ("run_type=weekly", "'run_type' must be one of"),
    ):
        status, _, body = system.client.request("GET", f"/api/v1/dags/etl/runs?{query}")
        assert status == 400 and message in body["error"]["message"]


def test_cancel_kills_the_running_task(system):
    trigger(system, "slow", {"run_id": "c"})
    system.wait_state("slow", "c", {"running"})
    poll_until(
        lambda: (
            system.store.tasks.get_task_instance(_key("slow", "c", "sleepy")).state.value
            == "running"
        ),
        timeout=10,
    )
    status, _, body = system.client.request("DELETE", "/api/v1/dags/slow/runs/c")
    assert status == 200 and body["data"]["state"] == "cancelled"
    run = system.client.request("GET", "/api/v1/dags/slow/runs/c")[2]["data"]
    assert {t["task_id"]: t["state"] for t in run["task_instances"]} == {
        "sleepy": "cancelled",
        "later": "cancelled",
    }
    status, _, body = system.client.request("DELETE", "/api/v1/dags/slow/runs/c")
    assert status == 409 and body["error"]["code"] == "conflict"
    assert system.client.request("DELETE", "/api/v1/dags/slow/runs/ghost")[0] == 404


def _key(dag_id: str, run_id: str, task_id: str):  # type: ignore[no-untyped-def]
    from pipeline_core.model import TaskKey

    return TaskKey(dag_id, run_id, task_id)


def test_retry_requeues_failed_tasks_and_the_run_succeeds(system):
    trigger(system, "flaky", {"run_id": "f"})
    failed = system.wait_state("flaky", "f", {"failed"})
    assert {t["task_id"]: t["state"] for t in failed["task_instances"]}[
        "after"
    ] == "upstream_failed"
    status, _, body = system.client.request("POST", "/api/v1/dags/flaky/runs/f/retry", {})
    assert status == 200 and sorted(body["data"]["requeued_task_ids"]) == ["after", "flaky"]
    system.wait_state("flaky", "f", {"success"})
    tries = system.client.request("GET", "/api/v1/dags/flaky/runs/f/tasks/flaky")[2]["data"][
        "tries"
    ]
    assert [t["state"] for t in tries] == ["failed", "success"]
    status, _, body = system.client.request(
        "POST", "/api/v1/dags/flaky/runs/f/retry", {"task_ids": []}
    )
    assert status == 409
    status, _, body = system.client.request(
        "POST", "/api/v1/dags/flaky/runs/f/retry", {"task_ids": "flaky"}
    )
    assert status == 400


def test_stats_metrics_and_import_errors(system):
    trigger(system, "etl", {"run_id": "m"})
    system.wait_state("etl", "m", {"success"})
    stats = system.client.request("GET", "/api/v1/dags/etl/stats")[2]["data"]
    assert stats["runs"]["total"] == 1 and stats["runs"]["by_state"] == {"success": 1}
    assert [t["task_id"] for t in stats["tasks"]] == ["extract", "load"]
    assert (
        system.client.request("GET", "/api/v1/dags/etl/stats?since=2030-01-01T00:00:00Z")[2][
            "data"
        ]["runs"]["total"]
        == 0
    )
    assert system.client.request("GET", "/api/v1/dags/etl/stats?since=x")[0] == 400
    snapshot = system.client.request("GET", "/api/v1/metrics")[2]["data"]
    assert any(c["name"] == "dag_run.completed" for c in snapshot["counters"])
    status, headers, text = system.client.request(
        "GET", "/api/v1/metrics", headers={"Accept": "text/plain"}
    )
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(text.decode())}
    assert "pipeline_core_task_completed" in names
    assert "pipeline_core_task_duration_seconds" in names
    status, headers, text = system.client.request("GET", "/api/v1/metrics/prometheus")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "pipeline_core_task_completed" in {
        f.name for f in text_string_to_metric_families(text.decode())
    }
    status, headers, text = system.client.request("GET", "/api/v1/metrics/openmetrics")
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert status == 200 and text.endswith(b"# EOF\n")
    status, _, body = system.client.request("GET", "/api/v1/metrics?format=prometheus")
    assert status == 400 and "unknown query parameter(s): format" in body["error"]["message"]
    status, headers, text = system.client.request(
        "GET", "/api/v1/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert text.endswith(b"# EOF\n")
    errors = system.client.request("GET", "/api/v1/import-errors")[2]
    assert errors["meta"]["total"] == 1 and errors["data"][0]["filename"].endswith("broken.yaml")
    assert "ghost" in errors["data"][0]["errors"][0]["message"]
    detail = system.client.request("GET", "/api/v1/dags/etl")[2]["data"]
    assert (
        detail["next_run_date"].endswith("06:00:00.000000Z") and detail["last_run"]["run_id"] == "m"
    )


def test_pools(system):
    client = system.client
    status, headers, body = client.request(
        "POST", "/api/v1/pools", {"name": "db", "slots": 2, "description": "warehouse"}
    )
    assert status == 201 and headers["Location"] == "/api/v1/pools/db"
    assert body["data"] == {
        "name": "db",
        "slots": 2,
        "description": "warehouse",
        "rate": None,
        "burst": 1,
        "running_slots": 0,
        "queued_slots": 0,
        "open_slots": 2,
    }
    assert client.request("POST", "/api/v1/pools", {"name": "db", "slots": 1})[0] == 409
    for bad in (
        {"name": "bad name", "slots": 1},
        {"name": "x", "slots": -1},
        {"name": "x", "slots": "3"},
        {"name": "x"},
        {"name": "x", "slots": True},
        {"name": "x", "slots": 1, "rate": "-1/s"},
        {"name": "x", "slots": 1, "rate": "100/week"},
        {"name": "x", "slots": 1, "rate": "1/s", "burst": 0},
    ):
        assert client.request("POST", "/api/v1/pools", bad)[0] == 400, bad
    limited = client.request("PATCH", "/api/v1/pools/db", {"rate": "100/minute", "burst": 5})
    assert (limited[2]["data"]["rate"], limited[2]["data"]["burst"]) == ("100/minute", 5)
    status, _, body = client.request("PATCH", "/api/v1/pools/db", {"rate": "fast"})
    assert status == 400 and "not N/s" in body["error"]["message"]
    assert client.request("PATCH", "/api/v1/pools/db", {"rate": None})[2]["data"]["rate"] is None
    assert client.request("PATCH", "/api/v1/pools/db", {"slots": 5})[2]["data"]["slots"] == 5
    assert client.request("PATCH", "/api/v1/pools/db", {})[0] == 400
    assert client.request("PATCH", "/api/v1/pools/ghost", {"slots": 1})[0] == 404
    names = [p["name"] for p in client.request("GET", "/api/v1/pools")[2]["data"]]
    assert names == ["db", "default_pool"]
    assert client.request("DELETE", "/api/v1/pools/default_pool")[0] == 409
    trigger(system, "slow", {"run_id": "busy"})
    system.wait_state("slow", "busy", {"running"})
    poll_until(
        lambda: (
            system.store.tasks.get_task_instance(_key("slow", "busy", "sleepy")).state.value
            == "running"
        ),
        timeout=10,
    )
    status, _, body = client.request("DELETE", "/api/v1/pools/default_pool")
    assert status == 409
    client.request("POST", "/api/v1/pools", {"name": "spare", "slots": 1})
    assert client.request("DELETE", "/api/v1/pools/spare")[2]["data"] == {
        "name": "spare",
        "deleted": True,
    }
    assert client.request("DELETE", "/api/v1/pools/spare")[0] == 404


def test_openapi_document_is_served(system):
    status, _, body = system.client.request("GET", "/api/v1/openapi.json")
    assert status == 200 and body["openapi"] == "3.1.0"
    assert "/api/v1/dags/{dag_id}/runs/{run_id}/retry" in body["paths"]


def test_a_dag_paused_through_the_api_gets_no_scheduled_run(system):
    from datetime import UTC, datetime

    from pipeline_core.scheduler.scheduler import Scheduler
    from pipeline_core.store.types import RunQuery

    assert system.client.request("PATCH", "/api/v1/dags/etl", {"is_paused": True})[0] == 200
    scheduler = Scheduler(system.store, system.engine or _RemoteRunner(system.store))
    scheduler.set_dags(load_folder(system.folder).dags)
    scheduler.tick(datetime(2026, 3, 1, 7, tzinfo=UTC))
    assert system.store.runs.query_runs(RunQuery(dag_id="etl")).total == 0
    system.client.request("PATCH", "/api/v1/dags/etl", {"is_paused": False})
    scheduler.tick(datetime(2026, 3, 1, 7, tzinfo=UTC))
    assert system.store.runs.query_runs(RunQuery(dag_id="etl", run_types=("scheduled",))).total == 1
