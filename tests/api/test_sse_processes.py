"""Across processes: an API process beside the engine's (routes and the live stream), and
the stream process of ``serve``."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.api.conftest import Client, SSEClient, api_port, start_pair, stop_pair
from tests.conftest import pipeline_core_process, poll_until

CHAIN = "dag_id: chain\ntasks:\n  a: {type: noop}\n  b: {type: noop, depends_on: [a]}\n  c: {type: noop, depends_on: [b]}\n"


TWO_PROCESS_DAG = (
    "tasks:\n  a: {type: noop}\n  b: {type: shell, command: 'echo hi', depends_on: [a]}\n"
)


def two_processes(tmp_path, db: str) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "pair.yaml").write_text(TWO_PROCESS_DAG)
    scheduler, api, port = start_pair(folder, db)
    stream = None
    try:
        client = Client(port)
        poll_until(lambda: client.request("GET", "/api/v1/dags/pair")[0] == 200, timeout=20)
        stream = SSEClient(port, "/api/v1/events?dag_id=pair")
        assert stream.message() == {"retry": "3000"}
        assert client.request("POST", "/api/v1/dags/pair/runs", {"run_id": "p"})[0] == 201
        events = stream.events(7)
        assert [(e.get("task_id"), e["new_state"]) for e in events] == [
            (None, "queued"), (None, "running"), ("a", "running"), ("a", "success"),
            ("b", "running"), ("b", "success"), (None, "success"),
        ]  # fmt: skip
        assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    finally:
        if stream is not None:
            stream.close()
        stop_pair(scheduler, api)


def test_two_processes_over_sqlite(tmp_path):
    two_processes(tmp_path, f"sqlite:///{tmp_path / 'pair.db'}")


def test_two_processes_over_postgres(tmp_path, pg_url):
    two_processes(tmp_path, pg_url)


def test_serve_writes_streams_from_its_stream_process(tmp_path):
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "chain.yaml").write_text(CHAIN)
    server = pipeline_core_process(
        "serve",
        "--no-scheduler",
        "--port",
        "0",
        "--dags-folder",
        str(folder),
        "--db",
        f"sqlite:///{tmp_path / 's.db'}",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    port = api_port(server)
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    stream = SSEClient(port, "/api/v1/events?dag_id=chain")
    try:
        assert stream.message() == {"retry": "3000"}
        assert any(
            "pipeline_core.api.sse.process" in Path(f"/proc/{pid}/cmdline").read_text()
            for pid in children.read_text().split()
        )
        assert Client(port).request("POST", "/api/v1/dags/chain/runs", {"run_id": "s"})[0] == 201
        events = stream.events(9)
        assert (events[0]["new_state"], events[-1]["new_state"]) == ("queued", "success")
    finally:
        stream.close()
        server.terminate()
        server.communicate(timeout=30)
    assert server.returncode == 0


def test_api_and_scheduler_as_two_processes(tmp_path):
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "two.yaml").write_text(
        "tasks:\n  a: {type: shell, command: 'echo one'}\n  b: {type: shell, command: 'sleep 30', depends_on: [a]}\n  c: {depends_on: [b]}\n"
    )
    (folder / "quick.yaml").write_text(
        "tasks:\n  hi: {type: shell, command: 'echo {{ dag_run.conf.n }}'}\n"
    )
    db = f"sqlite:///{tmp_path / 'two.db'}"
    scheduler, api, port = start_pair(folder, db)
    try:
        client = Client(port)
        poll_until(lambda: client.request("GET", "/api/v1/dags/two")[0] == 200, timeout=20)
        listed = {d["dag_id"]: d for d in client.request("GET", "/api/v1/dags")[2]["data"]}
        assert listed["quick"]["last_run"] is None
        status, _, body = client.request(
            "POST", "/api/v1/dags/quick/runs", {"run_id": "q", "conf": {"n": 1}}
        )
        assert status == 201
        poll_until(
            lambda: (
                client.request("GET", "/api/v1/dags/quick/runs/q")[2]["data"]["state"] == "success"
            ),
            timeout=20,
        )
        deadline = time.monotonic() + 10  # the API process learns of runs from the event log
        while True:
            listed = {d["dag_id"]: d for d in client.request("GET", "/api/v1/dags")[2]["data"]}
            if (listed["quick"]["last_run"] or {}).get("state") == "success":
                break
            assert time.monotonic() < deadline, listed["quick"]
            time.sleep(0.05)
        status, _, body = client.request("POST", "/api/v1/dags/two/runs", {"run_id": "x"})
        assert status == 201
        deadline = time.monotonic() + 20
        while True:
            tasks = client.request("GET", "/api/v1/dags/two/runs/x")[2]["data"]["task_instances"]
            if tasks[1]["state"] == "running":
                break
            assert time.monotonic() < deadline, tasks
            time.sleep(0.05)
        status, _, body = client.request("DELETE", "/api/v1/dags/two/runs/x")
        assert status == 200 and body["data"]["state"] == "cancelled"
        status, _, body = client.request(
            "POST",
            "/api/v1/dags/two/runs/x/retry",
            {"task_ids": ["a"], "include_downstream": False},
        )
        assert status == 200 and body["data"]["requeued_task_ids"] == ["a"]
        poll_until(
            lambda: (
                client.request("GET", "/api/v1/dags/two/runs/x")[2]["data"]["state"] == "cancelled"
            ),
            timeout=20,
        )
        health = client.request("GET", "/api/v1/health")[2]["data"]
        assert health["scheduler"]["status"] == "running"
    finally:
        stop_pair(scheduler, api)


def several_api_servers(tmp_path, db: str) -> None:  # type: ignore[no-untyped-def]
    """Two ``pipeline-core api`` servers beside one scheduler: a run triggered through one is
    streamed live by the other, and a cancel through the other reaches the engine."""
    import subprocess as sp

    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "slow.yaml").write_text(
        "tasks:\n  a: {type: noop}\n  s: {type: shell, command: 'sleep 30', depends_on: [a]}\n"
    )
    scheduler, first, port_a = start_pair(folder, db)
    second = pipeline_core_process(
        "api", "--db", db, "--port", "0", stdout=sp.PIPE, stderr=sp.STDOUT
    )
    stream = None
    try:
        port_b = api_port(second)
        a, b = Client(port_a), Client(port_b)
        poll_until(lambda: b.request("GET", "/api/v1/dags/slow")[0] == 200, timeout=20)
        stream = SSEClient(port_b, "/api/v1/events?dag_id=slow")
        assert stream.message() == {"retry": "3000"}
        assert a.request("POST", "/api/v1/dags/slow/runs", {"run_id": "x"})[0] == 201
        seen = stream.events(5)
        assert [(e.get("task_id"), e["new_state"]) for e in seen] == [
            (None, "queued"), (None, "running"), ("a", "running"), ("a", "success"),
            ("s", "running"),
        ]  # fmt: skip
        status, _, body = b.request("DELETE", "/api/v1/dags/slow/runs/x")
        assert status == 200, body
        assert [e["new_state"] for e in stream.events(2)] == ["cancelled", "cancelled"]
    finally:
        if stream is not None:
            stream.close()
        second.terminate()
        second.wait(30)
        if second.stdout:
            second.stdout.close()
        stop_pair(scheduler, first)


def test_several_api_servers_over_sqlite(tmp_path):
    several_api_servers(tmp_path, f"sqlite:///{tmp_path / 'many.db'}")


def test_several_api_servers_over_postgres(tmp_path, pg_url):
    several_api_servers(tmp_path, pg_url)
