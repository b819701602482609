"""Input a hostile or careless client sends: foreign Host and Origin headers, huge integers,
deep or repeated JSON, encoded bodies, odd methods and ids with a trailing newline. Each gets
a specific 4xx in the JSON envelope, and nothing is created."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from pipeline_core.api.server import APIServer
from pipeline_core.api.types import APIServerOptions
from pipeline_core.store import open_store
from pipeline_core.store.types import DagRecord
from tests.api.conftest import Client, serve
from tests.api.inprocess import AppClient


@pytest.fixture
def store(tmp_path):  # type: ignore[no-untyped-def]
    created = open_store(f"sqlite:///{tmp_path / 'api.db'}")
    created.dags.upsert_dag(DagRecord("etl", task_count=1))
    yield created
    created.close()


@pytest.fixture
def server(store) -> Iterator[APIServer]:  # type: ignore[no-untyped-def]
    started = APIServer(
        APIServerOptions(store=store, port=0, allowed_hosts=("orchestrator.internal",))
    ).start()
    yield started
    started.stop()


@pytest.fixture
def client(server) -> AppClient:  # type: ignore[no-untyped-def]
    return AppClient(server)


def error_of(body) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    assert body["data"] is None
    return body["error"]["code"], body["error"]["message"]


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:8080", "127.0.0.1:1", "[::1]:80", "orchestrator.internal"]
)
def test_loopback_and_listed_hosts_are_accepted(client, host):
    status, _, _ = client.request("GET", "/api/v1/dags", headers={"Host": host})
    assert status == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "[::1", "[evil]:x"]
)
def test_a_foreign_host_is_refused_against_dns_rebinding(client, store, host):
    status, _, body = client.request(
        "POST", "/api/v1/pools", {"name": "rebound", "slots": 1}, headers={"Host": host}
    )
    assert status == 421
    assert error_of(body)[0] == "misdirected_request"
    assert "--allowed-host" in error_of(body)[1]
    assert [p.name for p in store.pools.list_pools()] == ["default_pool"]


def test_a_server_on_a_public_address_takes_any_host(store):
    server = APIServer(APIServerOptions(store=store, host="0.0.0.0", port=0)).start()
    try:
        status, _, _ = Client(server.port).request(
            "GET", "/api/v1/dags", headers={"Host": "orchestrator.example.com"}
        )
        assert status == 200
    finally:
        server.stop()


def test_state_changes_from_a_foreign_origin_are_refused(client, store):
    status, _, body = client.request(
        "POST",
        "/api/v1/pools",
        {"name": "cross_site", "slots": 1},
        headers={"Origin": "http://evil.example"},
    )
    assert status == 403 and error_of(body)[0] == "forbidden_origin"
    assert "cross_site" not in [p.name for p in store.pools.list_pools()]
    # Reading is left to the browser (no CORS headers), and a local page may write.
    assert (
        client.request("GET", "/api/v1/dags", headers={"Origin": "http://evil.example"})[0] == 200
    )
    status, headers, _ = client.request(
        "POST",
        "/api/v1/pools",
        {"name": "local_page", "slots": 1},
        headers={"Origin": "http://localhost:3000"},
    )
    assert status == 201
    assert "Location" in headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize(
    "slots",
    [10**30, 2**63, -1, 1.5, "3", True],
    ids=["1e30", "2^63", "neg", "float", "str", "bool"],
)
def test_pool_slots_out_of_range_are_a_400(client, store, slots):
    status, _, body = client.request("POST", "/api/v1/pools", {"name": "big", "slots": slots})
    assert status == 400 and "'slots' must be a whole number" in error_of(body)[1]
    assert "big" not in [p.name for p in store.pools.list_pools()]


@pytest.mark.parametrize("depth", [65, 990, 5000])
def test_deeply_nested_json_is_a_400(client, depth):
    raw = (
        '{"name": "deep", "slots": 1, "description": ' + "[" * depth + "]" * depth + "}"
    ).encode()
    status, _, body = client.request(
        "POST", "/api/v1/pools", raw=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 400 and "nests deeper than 64 levels" in error_of(body)[1]


def test_repeated_json_keys_are_a_400(client, store):
    raw = b'{"name": "twice", "slots": 1, "slots": 500}'
    status, _, body = client.request(
        "POST", "/api/v1/pools", raw=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 400 and "key 'slots' appears more than once" in error_of(body)[1]
    assert "twice" not in [p.name for p in store.pools.list_pools()]


def test_an_encoded_body_is_a_415(client):
    import gzip

    raw = gzip.compress(json.dumps({"name": "zipped", "slots": 1}).encode())
    status, _, body = client.request(
        "POST",
        "/api/v1/pools",
        raw=raw,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert status == 415 and "Content-Encoding 'gzip' is not accepted" in error_of(body)[1]


@pytest.mark.parametrize("name", ["nlpool\n", "tab\tpool", "", "x" * 251])
def test_ids_are_matched_whole(client, store, name):
    status, _, body = client.request("POST", "/api/v1/pools", {"name": name, "slots": 1})
    assert status == 400 and "id" in error_of(body)[1]
    assert [p.name for p in store.pools.list_pools()] == ["default_pool"]


def test_trace_and_unknown_methods(server):
    for method, path, status, allow in [
        ("TRACE", "/api/v1/dags", 405, "GET, HEAD"),
        ("BREW", "/api/v1/pools", 501, None),
        ("PROPFIND", "/api/v1/pools", 405, "GET, HEAD, POST"),
        ("TRACE", "/nowhere", 404, None),
    ]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = sock.recv(65536).decode("latin-1")
        assert head.startswith(f"HTTP/1.1 {status} "), head
        if allow:
            assert f"Allow: {allow}\r\n" in head
        assert '"error"' in head and "Traceback" not in head


def test_head_works_on_every_get_route(server):
    client = Client(server.port)  # the head's Content-Length is the wire's
    status, headers, body = client.request("HEAD", "/api/v1/dags/etl")
    get_status, get_headers, _ = client.request("GET", "/api/v1/dags/etl")
    assert status == get_status == 200 and body == b""
    assert headers["Content-Length"] == get_headers["Content-Length"]


def test_health_is_503_when_the_store_is_unreachable():
    from pipeline_core.errors import StoreUnavailable
    from pipeline_core.store.sqlite.store import SqliteStore

    class Broken(SqliteStore):
        def ping(self) -> None:
            raise StoreUnavailable("database is gone")

    server = serve(Broken(":memory:"))
    try:
        status, _, body = Client(server.port).request("GET", "/api/v1/health")
        assert status == 503 and body["data"]["status"] == "unhealthy"
        assert body["data"]["store"] == {"status": "error"}
    finally:
        server.stop()
