"""The live event stream over real sockets."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from pipeline_core.api.server import APIServer
from pipeline_core.api.types import APIServerOptions
from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.engine import Engine
from pipeline_core.model import ExpandTask, TaskChange, TaskKey, TriggerRequest
from pipeline_core.state import TaskState
from pipeline_core.store import open_store
from pipeline_core.store.types import EventQuery
from tests.api.conftest import Client, SSEClient
from tests.conftest import pipeline_core_process, poll_until
from tests.store.helpers import key, new_run

CHAIN = "dag_id: chain\ntasks:\n  a: {type: noop}\n  b: {type: noop, depends_on: [a]}\n  c: {type: noop, depends_on: [b]}\n"


STREAMS = ["thread", "process"]


class Live:
    def __init__(self, tmp_path, event_streams="thread", **options) -> None:  # type: ignore[no-untyped-def]
        url = f"sqlite:///{tmp_path / 'sse.db'}"
        self.store = open_store(url)
        dags = {"chain": load_dag_text(CHAIN)}
        wide = (
            "dag_id: wide\nmax_active_runs: 100\nconcurrency: 64\ntasks:\n  s: {type: noop}\n"
            + "".join(f"  t{i}: {{type: noop, depends_on: [s]}}\n" for i in range(300))
        )
        dags["wide"] = load_dag_text(wide)
        self.engine = Engine(self.store, dags).start()
        self.server = APIServer(
            APIServerOptions(
                store=self.store,
                port=0,
                control=self.engine,
                event_streams=event_streams,
                database_url=url,
                **options,
            )
        ).start()
        self.streams: list[SSEClient] = []

    def stream(self, path: str = "/api/v1/events", **kw) -> SSEClient:  # type: ignore[no-untyped-def]
        client = SSEClient(self.server.port, path, **kw)
        self.streams.append(client)
        return client

    def close(self) -> None:
        for s in self.streams:
            s.close()
        self.server.stop()
        self.engine.stop(grace=0)
        self.store.close()


@pytest.fixture(params=STREAMS)
def live(tmp_path, request) -> Iterator[Live]:  # type: ignore[no-untyped-def]
    created = Live(tmp_path, request.param)
    yield created
    created.close()


def test_a_run_streams_in_commit_order(live):
    stream = live.stream()
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert (
        stream.headers["Cache-Control"] == "no-cache"
        and stream.headers["X-Accel-Buffering"] == "no"
    )
    assert stream.message() == {"retry": "3000"}
    live.engine.trigger(TriggerRequest("chain", run_id="r1"))
    events = stream.events(9)  # run queued/running, 3 x (running, success), run success
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and ids == [e["seq"] for e in events]
    assert [(e["event"], e.get("task_id"), e["new_state"]) for e in events] == [
        ("run.state_changed", None, "queued"),
        ("run.state_changed", None, "running"),
        ("task.state_changed", "a", "running"),
        ("task.state_changed", "a", "success"),
        ("task.state_changed", "b", "running"),
        ("task.state_changed", "b", "success"),
        ("task.state_changed", "c", "running"),
        ("task.state_changed", "c", "success"),
        ("run.state_changed", None, "success"),
    ]
    stored = [e.seq for e in live.store.events.read_events(EventQuery(run_id="r1"))]
    assert ids == stored
    assert {"dag_id", "run_id", "previous_state", "new_state", "timestamp", "seq"} <= set(events[2])


def test_filters(live):
    runs_only = live.stream("/api/v1/events?types=run.state_changed&run_id=r2")
    other_dag = live.stream("/api/v1/events?dag_id=nope")
    live.engine.trigger(TriggerRequest("chain", run_id="r1"))
    live.engine.trigger(TriggerRequest("chain", run_id="r2"))
    events = runs_only.events(3)
    assert [(e["event"], e["run_id"], e["new_state"]) for e in events] == [
        ("run.state_changed", "r2", "queued"),
        ("run.state_changed", "r2", "running"),
        ("run.state_changed", "r2", "success"),
    ]
    live.store.events.append_event("pool.updated", {"pool": "x"})
    assert other_dag.message() == {"retry": "3000"}


@pytest.mark.parametrize(
    ("query", "headers", "message"),
    [
        ("?types=task.exploded", {}, "'types' must be one of task.state_changed"),
        ("?colour=red", {}, "unknown query parameter(s): colour"),
        ("", {"Last-Event-ID": "999999"}, "newer than the newest event"),
        ("?last_event_id=abc", {}, "'last_event_id' must be a whole number"),
        ("", {"Last-Event-ID": "²"}, "'Last-Event-ID' must be a whole number"),
        ("", {"Last-Event-ID": "9" * 5000}, "'Last-Event-ID' must be a whole number"),
    ],
)
def test_bad_requests_are_refused_before_the_stream_starts(live, query, headers, message):
    status, _, body = Client(live.server.port).request(
        "GET", f"/api/v1/events{query}", headers=headers
    )
    assert status == 400 and message in body["error"]["message"]


def test_resume_after_a_disconnect_gets_exactly_the_missed_events(live):
    first = live.stream("/api/v1/events?dag_id=wide")
    first.message()
    live.engine.trigger(TriggerRequest("wide", run_id="w1"))
    seen = first.events(50)
    first.close()  # dropped mid-run
    last = seen[-1]["id"]
    poll_until(lambda: live.store.runs.get_run("wide", "w1").state.value == "success", timeout=20)
    stored = [
        e.seq for e in live.store.events.read_events(EventQuery(dag_id="wide", limit=100_000))
    ]
    resumed = live.stream("/api/v1/events?dag_id=wide", headers={"Last-Event-ID": str(last)})
    rest = resumed.events(len(stored) - 50)
    assert [e["id"] for e in seen] + [e["id"] for e in rest] == stored
    live.engine.trigger(TriggerRequest("chain", run_id="after"))  # other DAG: filtered out
    live.engine.trigger(TriggerRequest("wide", run_id="w2"))
    assert resumed.events(1)[0]["run_id"] == "w2"  # and then it continues live


def test_retention_gap_starts_with_a_reset(live):
    live.engine.trigger(TriggerRequest("chain", run_id="r1"))
    poll_until(lambda: live.store.runs.get_run("chain", "r1").state.value == "success", timeout=10)
    live.store.events.trim_events(5)
    stream = live.stream("/api/v1/events?last_event_id=1")
    assert stream.message() == {"retry": "3000"}
    reset = stream.message()
    assert reset is not None and reset["event"] == "reset" and '"first_seq": 5' in reset["data"]
    assert stream.events(1)[0]["id"] == 5


@pytest.mark.parametrize("streams", STREAMS)
def test_keepalive_comments(tmp_path, streams):
    live = Live(tmp_path, streams, sse_keepalive=0.1)
    try:
        stream = live.stream()
        assert stream.message() == {"retry": "3000"}
        assert stream.message() == {"comment": "keepalive"}
        assert stream.message() == {"comment": "keepalive"}
    finally:
        live.close()


@pytest.mark.parametrize("streams", STREAMS)
def test_server_stop_ends_streams_promptly(tmp_path, streams):
    live = Live(tmp_path, streams)
    stream = live.stream()
    stream.message()
    started = time.monotonic()
    live.server.stop()
    assert stream.message() is None
    assert time.monotonic() - started < 3
    live.engine.stop(grace=0)
    stream.close()
    live.store.close()


@pytest.mark.parametrize("streams", STREAMS)
def test_a_stalled_subscriber_is_dropped_and_others_get_everything(tmp_path, streams):
    live = Live(tmp_path, streams, sse_queue_size=1000)
    try:
        healthy = live.stream("/api/v1/events?dag_id=wide")
        healthy.message()
        stalled = live.stream("/api/v1/events?dag_id=wide", rcvbuf=1024)
        assert stalled.message() == {"retry": "3000"}  # and then never read from
        runs, per_run = 6, 2 + 301 * 2 + 1
        received: list[dict] = []
        reader = threading.Thread(target=lambda: received.extend(healthy.events(runs * per_run)))
        reader.start()
        started = time.monotonic()
        for i in range(runs):
            run = live.engine.trigger(TriggerRequest("wide", run_id=f"w{i}"))
            poll_until(
                lambda run=run: (
                    live.store.runs.get_run("wide", run.run_id).state.value == "success"
                ),
                timeout=30,
            )
        duration = time.monotonic() - started
        reader.join(60)
        stored = [
            e.seq for e in live.store.events.read_events(EventQuery(dag_id="wide", limit=100_000))
        ]
        assert [e["id"] for e in received] == stored  # the healthy one missed nothing
        assert duration < 20
        assert stalled.status == 200
        assert stalled.drain() < 2 * per_run  # disconnected once it fell behind
    finally:
        live.close()


@pytest.mark.parametrize("streams", STREAMS)
def test_a_subscriber_stalled_in_its_replay_is_dropped_when_it_falls_behind(tmp_path, streams):
    """The replay of stored events follows the log as it grows; a client that stops reading
    during it is held to the same bound as a live one instead of being sent the whole log."""
    live = Live(tmp_path, streams, sse_queue_size=1000)
    try:
        per_run = 2 + 301 * 2 + 1

        def run(run_id: str) -> None:
            live.engine.trigger(TriggerRequest("wide", run_id=run_id))
            poll_until(
                lambda: live.store.runs.get_run("wide", run_id).state.value == "success",
                timeout=30,
            )

        for i in range(4):
            run(f"stored{i}")
        stalled = live.stream("/api/v1/events?dag_id=wide&last_event_id=0", rcvbuf=1024)
        assert stalled.message() == {"retry": "3000"}  # the replay's first page now blocks
        for i in range(2):
            run(f"live{i}")  # more than the 1,000 events it may fall behind by
        assert stalled.drain() < 2 * per_run  # not the 3,600 events stored by now
    finally:
        live.close()


@pytest.mark.parametrize("streams", STREAMS)
def test_a_burst_of_subscribers_is_accepted_at_once(tmp_path, streams):
    """Hundreds of clients connecting together (a reconnect storm) are all subscribed
    promptly: the accept queue holds them instead of the kernel dropping their handshakes."""
    live = Live(tmp_path, streams)
    clients: list[socket.socket] = []
    try:
        started = time.monotonic()
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", live.server.port), timeout=10)
            sock.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            clients.append(sock)
        connected = time.monotonic() - started
        for sock in clients:
            received = b""
            while b"retry: 3000" not in received:
                chunk = sock.recv(4096)
                assert chunk, "the stream ended before it started"
                received += chunk
        assert connected < 5  # with a backlog of 5, SYN retries made this take minutes
    finally:
        for sock in clients:
            sock.close()
        live.close()


def test_a_dead_stream_process_is_replaced(tmp_path):
    live = Live(tmp_path, "process")
    try:
        first = live.stream()
        assert first.message() == {"retry": "3000"}
        process = live.server.streams._process  # type: ignore[union-attr]
        process.kill()
        process.wait(10)
        assert first.message() is None  # its streams end; clients resume from their last id
        second = live.stream()
        assert second.message() == {"retry": "3000"}
        live.engine.trigger(TriggerRequest("chain", run_id="after"))
        assert second.events(1)[0]["run_id"] == "after"
        assert live.server.streams._process is not process  # type: ignore[union-attr]
    finally:
        live.close()


@pytest.mark.parametrize("streams", STREAMS)
def test_auth_for_streams(tmp_path, streams):
    live = Live(tmp_path, streams, auth_token="tok")
    try:
        status, headers, _ = Client(live.server.port).request("GET", "/api/v1/events")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert live.stream("/api/v1/events?access_token=wrong").status == 401
        with_header = live.stream(headers={"Authorization": "Bearer tok"})
        assert with_header.status == 200 and with_header.message() == {"retry": "3000"}
        with_query = live.stream("/api/v1/events?access_token=tok")  # a browser EventSource
        assert with_query.status == 200
    finally:
        live.close()


def test_events_command_prints_readable_lines_and_resumes(live):
    command = ["events", "--server", f"http://127.0.0.1:{live.server.port}", "--dag-id", "chain"]
    follower = pipeline_core_process(*command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert follower.stderr is not None and "following" in follower.stderr.readline()
        live.engine.trigger(TriggerRequest("chain", run_id="cli"))
        assert follower.stdout is not None
        lines = [follower.stdout.readline() for _ in range(9)]
        assert "run chain/cli  None → queued" in lines[0]
        assert "chain/cli/a  queued → running  (try 1)" in lines[2]
        assert "run chain/cli  running → success" in lines[8]
    finally:
        follower.terminate()
        follower.communicate(timeout=10)
    refused = pipeline_core_process(
        *command[:-2], "--types", "nope", "--once", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, errors = refused.communicate(timeout=30)
    assert refused.returncode == 1 and "'types' must be one of" in errors


@pytest.mark.parametrize("streams", STREAMS)
def test_a_requests_based_client_gets_each_event_as_it_is_written(tmp_path, streams):
    """``sseclient-py`` over ``requests`` reads a chunked stream chunk by chunk: each event
    arrives within a second of its commit, with no keepalive needed to push it through."""
    import requests
    import sseclient

    live = Live(tmp_path, streams, sse_keepalive=60.0)
    received: list[tuple[float, str, dict]] = []
    try:
        response = requests.get(
            f"http://127.0.0.1:{live.server.port}/api/v1/events?dag_id=chain",
            stream=True,
            timeout=10,
        )
        assert response.headers["Transfer-Encoding"] == "chunked"
        client = sseclient.SSEClient(response)

        def read() -> None:
            for event in client.events():
                received.append((time.monotonic(), event.event, json.loads(event.data)))
                if event.event == "run.state_changed" and received[-1][2]["new_state"] == "success":
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.2)  # (the reader is subscribed once the head is read; nothing to wait on)
        run = live.engine.trigger(TriggerRequest("chain"))
        poll_until(
            lambda: live.store.runs.get_run("chain", run.run_id).state.value == "success",
            timeout=10,
        )
        finished = time.monotonic()
        reader.join(timeout=5)
        assert not reader.is_alive(), "the final event never reached the client"
        assert received[-1][0] - finished < 1.0
        assert [e for _, e, _ in received].count("task.state_changed") == 6  # 3 tasks, 2 each
        response.close()
    finally:
        live.close()


def test_the_instances_of_a_mapped_task_stream_with_their_map_index(live):
    stream = live.stream("/api/v1/events?types=task.expanded,task.state_changed&dag_id=etl")
    assert stream.message() == {"retry": "3000"}
    new_run(live.store)  # a DAG the engine does not run: the store is written as it would be
    live.store.runs.apply([ExpandTask(key("b"), 3)])
    live.store.tasks.transition_tasks(
        [
            TaskChange(
                TaskKey("etl", "r1", "b", 2), TaskState.QUEUED, TaskState.RUNNING, try_number=1
            )
        ]
    )
    expanded, moved = stream.events(2)
    assert (expanded["event"], expanded["task_id"], expanded["count"]) == ("task.expanded", "b", 3)
    assert (moved["event"], moved["map_index"], moved["new_state"]) == (
        "task.state_changed",
        2,
        "running",
    )


def test_asset_updates_stream_with_their_uri_and_extra(live):
    stream = live.stream("/api/v1/events?types=asset.updated")
    assert stream.message() == {"retry": "3000"}
    update, _ = live.store.assets.post_update("db://warehouse/orders", {"rows": 5})
    (event,) = stream.events(1)
    assert (event["event"], event["uri"], event["extra"]) == (
        "asset.updated",
        "db://warehouse/orders",
        {"rows": 5},
    )
    assert int(event["id"]) == update.id
