"""The API server on an ephemeral port, driven by a real HTTP client."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from pipeline_core.store import open_store
from pipeline_core.store.types import DagRecord
from tests.api.conftest import Client, serve
from tests.api.inprocess import AppClient


@pytest.fixture
def store(tmp_path):  # type: ignore[no-untyped-def]
    created = open_store(f"sqlite:///{tmp_path / 'api.db'}")
    created.dags.upsert_dag(
        DagRecord(
            "etl",
            tags=("etl", "prod"),
            schedule="@daily",
            task_count=2,
            description="ETL",
            definition={"tasks": [{"task_id": "a", "type": "noop", "depends_on": []}]},
        )
    )
    created.dags.upsert_dag(DagRecord("report", tags=("report",)))
    yield created
    created.close()


@pytest.fixture
def client(server) -> AppClient:  # type: ignore[no-untyped-def]
    return AppClient(server)


def test_starts_and_stops_cleanly_and_frees_the_port(store):
    server = serve(store)
    port = server.port
    client = Client(port)
    assert client.request("GET", "/api/v1/version")[0] == 200  # keeps an idle keep-alive open
    server.stop()
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    probe.bind(("127.0.0.1", port))  # nothing listens there any more
    probe.close()
    leftovers = [t for t in threading.enumerate() if t.name == "api" or "process_request" in t.name]
    assert leftovers == []


def test_health_and_version(client):
    status, headers, body = client.request("GET", "/api/v1/health")
    assert status == 200
    assert body["data"]["status"] == "healthy"
    assert body["data"]["scheduler"] == {
        "status": "absent",
        "last_heartbeat": None,
        "heartbeat_age_s": None,
    }
    assert body["data"]["store"] == {"status": "ok"}
    assert body["data"]["reasons"] == []
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert len(headers["X-Request-Id"]) >= 8
    status, _, body = client.request("GET", "/api/v1/version")
    assert body["data"]["api_version"] == "v1" and body["data"]["version"]


def test_health_is_degraded_with_a_reason_when_no_dags_are_loaded(tmp_path):
    empty = open_store(f"sqlite:///{tmp_path / 'empty.db'}")
    server = serve(empty, scheduler_expected=True)
    try:
        empty.heartbeats.heartbeat("s1", kind="scheduler", hostname="h", pid=1)
        _, _, body = Client(server.port).request("GET", "/api/v1/health")
        assert body["data"]["status"] == "degraded"
        assert body["data"]["reasons"] == [
            "no DAGs are loaded: the DAGs folder has no DAG files, or none loads"
        ]
    finally:
        server.stop()
        empty.close()


def test_health_reports_a_running_scheduler(client, store):
    store.heartbeats.heartbeat("s1", kind="scheduler", hostname="h", pid=1)
    _, _, body = client.request("GET", "/api/v1/health")
    assert body["data"]["scheduler"]["status"] == "running"
    assert body["data"]["scheduler"]["heartbeat_age_s"] < 5
    store.heartbeats.heartbeat("engine-h-1", kind="engine", hostname="h", pid=1)
    store.heartbeats.heartbeat("standby-h-2", kind="standby", hostname="h", pid=2)
    _, _, body = client.request("GET", "/api/v1/health")
    roles = {i["id"]: (i["kind"], i["role"], i["pid"]) for i in body["data"]["instances"]}
    assert roles == {
        "engine-h-1": ("engine", "active", 1),
        "s1": ("scheduler", "active", 1),
        "standby-h-2": ("standby", "standby", 2),
    }


def test_unknown_route_and_wrong_method(client):
    status, _, body = client.request("GET", "/api/v1/nope")
    assert status == 404 and body == {
        "data": None,
        "error": {"code": "not_found", "message": "no route for /api/v1/nope", "details": {}},
    }
    status, headers, body = client.request("DELETE", "/api/v1/dags/etl")
    assert status == 405 and headers["Allow"] == "GET, HEAD, PATCH"
    assert body["error"]["code"] == "method_not_allowed"


def test_list_dags_with_filters_and_pages(client):
    status, _, body = client.request("GET", "/api/v1/dags")
    assert status == 200
    assert [d["dag_id"] for d in body["data"]] == ["etl", "report"]
    assert body["meta"] == {"total": 2, "limit": 100, "offset": 0, "has_more": False}
    assert body["data"][0]["tags"] == ["etl", "prod"] and body["data"][0]["last_run"] is None
    assert [d["dag_id"] for d in client.request("GET", "/api/v1/dags?tags=report")[2]["data"]] == [
        "report"
    ]
    assert [
        d["dag_id"] for d in client.request("GET", "/api/v1/dags?dag_id_pattern=ET")[2]["data"]
    ] == ["etl"]
    page = client.request("GET", "/api/v1/dags?limit=1&offset=1")[2]
    assert [d["dag_id"] for d in page["data"]] == ["report"] and page["meta"]["has_more"] is False


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=abc", "'limit' must be a whole number from 1 to 1000, got 'abc'"),
        ("limit=1001", "'limit' must be a whole number from 1 to 1000"),
        ("offset=-1", "'offset' must be a whole number from 0 to 9007199254740992"),
        (f"offset={10**30}", "'offset' must be a whole number"),
        ("limit=%C2%B2", "'limit' must be a whole number"),
        ("colour=red", "unknown query parameter(s): colour"),
        ("is_paused=maybe", "'is_paused' must be true or false"),
    ],
)
def test_bad_query_parameters(client, query, message):
    status, _, body = client.request("GET", f"/api/v1/dags?{query}")
    assert status == 400 and body["error"]["code"] == "invalid_request"
    assert message in body["error"]["message"]


def test_get_dag_and_unknown_dag(client):
    status, _, body = client.request("GET", "/api/v1/dags/etl/")  # trailing slash tolerated
    assert status == 200 and body["data"]["tasks"] == [
        {
            "task_id": "a",
            "type": "noop",
            "depends_on": [],
            "trigger_rule": None,
            "retries": None,
            "pool": None,
            "priority_weight": None,
        }
    ]
    status, _, body = client.request("GET", "/api/v1/dags/ghost")
    assert status == 404 and body["error"]["message"] == "no DAG 'ghost'"


def test_pause_and_unpause(client, store):
    status, _, body = client.request("PATCH", "/api/v1/dags/etl", {"is_paused": True})
    assert status == 200 and body["data"]["is_paused"] is True
    assert store.dags.get_dag("etl").is_paused is True
    assert (
        client.request("PATCH", "/api/v1/dags/etl", {"is_paused": False})[2]["data"]["is_paused"]
        is False
    )


@pytest.mark.parametrize(
    ("raw", "headers", "status", "code", "message"),
    [
        (
            b"{not json",
            {"Content-Type": "application/json"},
            400,
            "invalid_request",
            "malformed JSON",
        ),
        (
            b"[1, 2]",
            {"Content-Type": "application/json"},
            400,
            "invalid_request",
            "must be a JSON object",
        ),
        (
            b'{"is_paused": true, "owner": "x"}',
            {"Content-Type": "application/json"},
            400,
            "invalid_request",
            "unknown field(s) owner",
        ),
        (
            b'{"is_paused": "yes"}',
            {"Content-Type": "application/json"},
            400,
            "invalid_request",
            "must be true or false",
        ),
        (b"{}", {"Content-Type": "application/json"}, 400, "invalid_request", "needs 'is_paused'"),
        (
            b'{"is_paused": true}',
            {"Content-Type": "text/plain"},
            415,
            "unsupported_media_type",
            "application/json",
        ),
        (b'{"is_paused": true}', {}, 415, "unsupported_media_type", "no Content-Type"),
    ],
)
def test_bad_bodies_change_nothing(client, store, raw, headers, status, code, message):
    got, _, body = client.request("PATCH", "/api/v1/dags/etl", raw=raw, headers=headers)
    assert (got, body["error"]["code"]) == (status, code)
    assert message in body["error"]["message"]
    assert store.dags.get_dag("etl").is_paused is False


def test_oversized_body_is_refused_before_it_is_read(store):
    server = serve(store, max_body_bytes=100)
    try:
        status, headers, body = Client(server.port).request(
            "PATCH",
            "/api/v1/dags/etl",
            raw=b"x" * 1000,
            headers={"Content-Type": "application/json"},
        )
        assert status == 413 and body["error"]["code"] == "payload_too_large"
        assert headers["Connection"] == "close"
    finally:
        server.stop()


@pytest.mark.parametrize("path", ["/api/v1/dags/a%2Fb", "/api/v1/dags/../dags", "/api/v1/dags/%ff"])
def test_suspicious_paths(client, path):
    status, _, body = client.request("GET", path)
    assert status == 400 and body["error"]["code"] == "invalid_request"


def test_request_id_is_echoed_when_valid(client):
    assert (
        client.request("GET", "/api/v1/version", headers={"X-Request-Id": "ci-123"})[1][
            "X-Request-Id"
        ]
        == "ci-123"
    )
    assert (
        client.request("GET", "/api/v1/version", headers={"X-Request-Id": "bad id!"})[1][
            "X-Request-Id"
        ]
        != "bad id!"
    )


def test_keep_alive_serves_many_requests_on_one_connection(client):
    for _ in range(20):
        assert client.request("GET", "/api/v1/dags")[0] == 200


def test_auth(store):
    server = serve(store, auth_token="s3cret")
    client = Client(server.port)
    try:
        status, headers, _body = client.request("GET", "/api/v1/dags")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert (
            client.request("GET", "/api/v1/dags", headers={"Authorization": "Bearer wrong"})[0]
            == 401
        )
        assert (
            client.request("GET", "/api/v1/dags", headers={"Authorization": "Bearer s3cret"})[0]
            == 200
        )
        assert client.request("GET", "/api/v1/health")[0] == 200  # health and version stay open
    finally:
        server.stop()


def test_cors(client, store):
    _, headers, _ = client.request(
        "GET", "/api/v1/dags", headers={"Origin": "http://localhost:3000"}
    )
    assert (
        headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        and headers["Vary"] == "Origin"
    )
    _, headers, _ = client.request("GET", "/api/v1/dags", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers
    status, headers, _ = client.request(
        "OPTIONS",
        "/api/v1/dags/etl",
        headers={"Origin": "http://127.0.0.1:5173", "Access-Control-Request-Method": "PATCH"},
    )
    assert status == 204 and "PATCH" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Max-Age"] == "600"
    server = serve(store, cors_origins=["https://dash.example"])
    try:
        _, headers, _ = Client(server.port).request(
            "GET", "/api/v1/dags", headers={"Origin": "https://dash.example"}
        )
        assert headers["Access-Control-Allow-Origin"] == "https://dash.example"
    finally:
        server.stop()


def test_idle_clients_are_timed_out(store):
    server = serve(store, head_timeout=0.3, idle_timeout=0.3)
    try:
        idle = socket.create_connection(("127.0.0.1", server.port))
        idle.settimeout(5)
        assert idle.recv(1) == b""  # the server closed the silent connection
        idle.close()
        kept_alive = Client(server.port)
        assert kept_alive.request("GET", "/api/v1/version")[0] == 200
        kept_alive.connection.sock.settimeout(5)
        assert kept_alive.connection.sock.recv(1) == b""  # closed after the idle timeout
        assert Client(server.port).request("GET", "/api/v1/version")[0] == 200
    finally:
        server.stop()


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_header_floods_and_garbage_get_json_errors(server):
    flood = (
        b"GET /api/v1/version HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(b"X-%d: y\r\n" % i for i in range(150))
        + b"\r\n"
    )
    answer = raw_exchange(server.port, flood)
    assert answer.startswith(b"HTTP/1.1 431") and b'"code":"invalid_request"' in answer
    garbage = raw_exchange(server.port, b"NONSENSE\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 501") and b"unknown request method" in garbage
    tls_hello = raw_exchange(server.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    assert tls_hello.startswith(b"HTTP/1.1 501") and b'"error"' in tls_hello
    http09 = raw_exchange(server.port, b"GET /\r\n\r\n")
    assert http09.startswith(b"HTTP/1.1 505") and b"HTTP/0.9 is not supported" in http09
    bad_line = raw_exchange(server.port, b"GET / HTTP/1.1 extra\r\n\r\n")
    assert bad_line.startswith(b"HTTP/1.1 400") and b"malformed request" in bad_line
    huge_uri = raw_exchange(server.port, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert huge_uri.startswith(b"HTTP/1.1 414")


def test_bad_content_length(server):
    answer = raw_exchange(
        server.port,
        b"PATCH /api/v1/dags/etl HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 400") and b"Content-Length" in answer


def test_unexpected_errors_are_a_generic_500_with_the_request_id(caplog):
    from pipeline_core.api.app import App, AppSettings
    from pipeline_core.api.http import Request
    from pipeline_core.api.router import Route

    def broken(request: Request):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internals")

    app = App([Route("/boom", broken)], AppSettings())
    response = app(Request("GET", "/boom", headers={"x-request-id": "req-1"}))
    body = json.loads(response.body)
    assert response.status == 500 and body["error"]["code"] == "internal"
    assert "req-1" in body["error"]["message"] and "secret" not in body["error"]["message"]
    assert "secret internals" in caplog.text


def test_json_request_log_lines_without_tokens(store, caplog):
    import logging

    server = serve(store, log_json=True, auth_token="hunter2")
    try:
        with caplog.at_level(logging.INFO, logger="pipeline_core.api"):
            Client(server.port, token="hunter2").request("GET", "/api/v1/dags?limit=1")
        line = json.loads(next(r.message for r in caplog.records if r.name == "pipeline_core.api"))
        assert line["method"] == "GET" and line["path"] == "/api/v1/dags" and line["status"] == 200
        assert "duration_ms" in line and "request_id" in line
        assert "hunter2" not in caplog.text
    finally:
        server.stop()


def test_dag_listing_is_served_from_cache_until_something_changes(client, store, server):
    first = client.request("GET", "/api/v1/dags")[2]["data"]
    assert client.request("GET", "/api/v1/dags")[2]["data"] == first
    version = server.cache.version
    store.dags.set_paused("etl", True)  # a dag.updated event invalidates the rendered listing
    assert server.cache.version == version + 1
    listed = {d["dag_id"]: d for d in client.request("GET", "/api/v1/dags")[2]["data"]}
    assert listed["etl"]["is_paused"] is True
