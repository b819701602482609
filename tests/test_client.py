"""``pipeline_core.client`` against a real ``serve`` process: every route, its errors, retries
and the event stream resumed across a server restart."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline_core.client import APIError, Client, ServerUnreachable, StreamTimedOut
from tests.test_remote_cli import Server, free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("client")).start()
    yield started
    started.stop()


@pytest.fixture
def client(served: Server) -> Iterator[Client]:
    with Client(served.url) as api:
        yield api


def test_health_version_dags_and_documents(client: Client) -> None:
    assert client.health()["status"] == "healthy"
    assert client.version()["api_version"]
    dags = {d["dag_id"] for d in client.list_dags()}
    assert {"ok", "fails", "slow", "steps", "berlin"} <= dags
    assert [d["dag_id"] for d in client.list_dags(dag_id_pattern="BERL")] == ["berlin"]
    assert [t["task_id"] for t in client.get_dag("ok")["tasks"]] == ["a", "b"]
    assert client.import_errors() == []
    assert "/api/v1/dags/{dag_id}/runs/{run_id}/wait" in client.openapi()["paths"]
    assert set(client.metrics()) == {"counters", "gauges", "histograms"}
    paused = client.set_paused("slow", True)
    assert paused["is_paused"] is True
    assert client.set_paused("slow", False)["is_paused"] is False


def test_trigger_wait_and_read_a_run(client: Client) -> None:
    triggered = client.trigger_run("ok", {"sha": "1"}, run_id="c1", note="from the client")
    assert triggered.run["run_id"] == "c1" and not triggered.replayed
    ended = client.wait_run("ok", "c1", timeout=30)
    assert not ended.timed_out and ended.run["state"] == "success"
    assert [t["state"] for t in ended.run["task_instances"]] == ["success", "success"]
    assert client.get_run("ok", "c1")["note"] == "from the client"
    assert [r["run_id"] for r in client.list_runs("ok", state=["success"])].count("c1") == 1
    assert [t["task_id"] for t in client.tasks.list("ok", "c1")] == ["a", "b"]
    assert client.tasks.get("ok", "c1", "b")["tries"][0]["state"] == "success"
    [xcom] = client.tasks.xcom("ok", "c1", "b")
    assert (xcom["key"], xcom["value"]) == ("return_value", "hello from b")
    assert client.tasks.xcom("ok", "c1", "b", keys=["other"]) == []
    log = client.tasks.log("ok", "c1", "b")
    assert "hello from b" in log["text"]
    assert "hello from b" in "".join(client.tasks.follow_log("ok", "c1", "b"))
    assert client.dag_stats("ok")["runs"]["total"] >= 1
    assert client.set_note("ok", "c1", "noted")["note"] == "noted"


def test_a_repeated_key_replays(client: Client) -> None:
    first = client.trigger_run("ok", {"x": 1}, idempotency_key="same")
    again = client.trigger_run("ok", {"x": 1}, idempotency_key="same")
    assert again.replayed and again.run["run_id"] == first.run["run_id"]
    with pytest.raises(APIError) as refused:
        client.trigger_run("ok", {"x": 2}, idempotency_key="same")
    assert refused.value.status == 409 and refused.value.code == "conflict"
    assert refused.value.details["idempotency_key"] == "same"
    assert refused.value.request_id


def test_operate_a_run(client: Client) -> None:
    client.trigger_run("slow", run_id="op")
    waited = client.wait_run("slow", "op", timeout=0.5)
    assert waited.timed_out and waited.run["state"] in ("queued", "running")
    assert client.cancel_run("slow", "op")["state"] == "cancelled"
    assert client.clear_run("slow", "op", dry_run=True)["task_ids"] == ["sleepy"]
    assert client.mark_run("slow", "op", "failed")["state"] == "failed"
    assert client.tasks.mark("slow", "op", "sleepy", "success")["state"] == "success"
    assert client.get_run("slow", "op")["state"] == "success"
    client.trigger_run("fails", run_id="again")
    assert client.wait_run("fails", "again", 30).run["state"] == "failed"
    assert client.retry_run("fails", "again")["requeued_task_ids"] == ["boom"]
    assert client.wait_run("fails", "again", 30).run["task_instances"][0]["try_number"] == 2
    assert client.clear_run("fails", "again", only_failed=True)["task_ids"] == ["boom"]


def test_pools_and_backfills(client: Client) -> None:
    assert client.pools.create("client", 2, "for tests")["slots"] == 2
    assert client.pools.update("client", slots=4)["slots"] == 4
    assert "client" in {p["name"] for p in client.pools.list()}
    assert client.pools.delete("client")["name"] == "client"
    plan = client.backfills.create("berlin", "2026-02-01", "2026-02-03", dry_run=True)
    assert plan["runs"] == 3
    # 0.3 s a run, one at a time: cancelled long before its sixth run could end
    backfill = client.backfills.create(
        "hourly", "2026-02-01T00:00:00Z", "2026-02-01T05:00:00Z", max_active_runs=1
    )
    assert backfill["total"] == 6 and backfill["state"] == "running"
    assert [b["id"] for b in client.backfills.list("hourly")].count(backfill["id"]) == 1
    cancelled = client.backfills.cancel("hourly", backfill["id"])
    assert cancelled["state"] == "cancelled"
    assert client.backfills.get("hourly", backfill["id"])["state"] == "cancelled"
    with pytest.raises(APIError) as again:
        client.backfills.cancel("hourly", backfill["id"])
    assert again.value.status == 409
    with pytest.raises(APIError) as elsewhere:
        client.backfills.get("berlin", backfill["id"])
    assert elsewhere.value.status == 404


def test_errors_carry_the_envelope(client: Client) -> None:
    with pytest.raises(APIError) as missing:
        client.get_run("ok", "ghost")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert "ghost" in missing.value.message
    with pytest.raises(APIError) as bad:
        client.list_runs("ok", state=["sideways"])
    assert bad.value.status == 400 and "sideways" in bad.value.message
    with pytest.raises(APIError) as bad_backfill:
        client.backfills.create("berlin", "2026-03-30", "2026-03-01")
    assert "reversed" in bad_backfill.value.message


def test_a_server_that_is_not_there_is_unreachable_after_the_retries() -> None:
    started = time.monotonic()
    api = Client(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.05)
    with pytest.raises(ServerUnreachable, match="after 3 attempt"):
        api.health()
    assert time.monotonic() - started < 5
    with pytest.raises(ValueError, match="not an http"):
        Client("ftp://example")


def test_503_is_retried_and_then_answered() -> None:
    """A server that is busy for two answers, then answers: the client's third try wins."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    busy = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Retry-After: 0\r\nContent-Length: 70\r\nConnection: close\r\n\r\n"
        b'{"data":null,"error":{"code":"unavailable","message":"busy","details":{}}}'[:70]
    )
    fine = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 28\r\n"
        b'Connection: close\r\n\r\n{"data":{"api_version":"1"}}'
    )

    def answer() -> None:
        for reply in (busy, busy, fine):
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(reply)
            conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    with Client(f"http://127.0.0.1:{listener.getsockname()[1]}", backoff=0.01) as api:
        assert api.version() == {"api_version": "1"}
    thread.join(5)
    listener.close()


def test_events_resume_across_a_server_restart(tmp_path: Path) -> None:
    restarting = Server(tmp_path).start()
    try:
        with Client(restarting.url) as api:
            api.trigger_run("ok", run_id="before")
            api.wait_run("ok", "before", 30)
            seen: list[int] = []
            stream = api.events(types=("run.state_changed",), last_event_id=0, max_tries=60)
            for event in stream:
                if event.id is not None:
                    seen.append(event.id)
                if event.data.get("run_id") == "before" and event.data["new_state"] == "success":
                    break
            restarting.stop()
            restarting.start()
            with Client(restarting.url) as other:
                other.trigger_run("ok", run_id="after")
            for event in stream:  # the same iterator: it reconnects with Last-Event-ID
                if event.id is not None:
                    seen.append(event.id)
                if event.data.get("run_id") == "after" and event.data["new_state"] == "success":
                    break
            assert seen == sorted(set(seen))  # no event twice, in order
            with pytest.raises(StreamTimedOut):
                for _ in api.events(run_id="nothing-happens", until=time.monotonic() + 0.5):
                    pass
    finally:
        restarting.stop()


def test_a_backfill_runs_at_most_max_active_runs_at_once(client: Client) -> None:
    backfill = client.backfills.create(
        "hourly", "2026-01-01T00:00:00Z", "2026-01-01T05:00:00Z", max_active_runs=2
    )
    active, most = set(), 0
    for event in client.events(dag_id="hourly", types=("run.state_changed", "backfill.updated"),
                               last_event_id=0,
                               until=time.monotonic() + 60):  # fmt: skip
        run_id, state = event.data.get("run_id"), event.data.get("new_state")
        if event.type == "run.state_changed" and str(run_id).startswith("backfill__"):
            if state in ("queued", "running"):
                active.add(run_id)
            else:
                active.discard(run_id)
            most = max(most, len(active))
        # The backfill ends after its last run: its own event may be the last one to come.
        done = client.backfills.get("hourly", backfill["id"])
        if done["state"] == "completed" and not active:
            break
    assert most == 2
    assert done["counts"] == {"success": 6}
    assert [d["logical_date"][11:13] for d in done["dates"]] == ["00", "01", "02", "03", "04", "05"]
    assert all(d["run_id"].startswith("backfill__2026-01-01T") for d in done["dates"])
