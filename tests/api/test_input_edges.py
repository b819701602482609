"""Every input at its edges gets an answer: date-times at the ends of the supported range,
strings that JSON can carry but no store keeps, ids no URL can address, HEAD on streams and
the event stream's parameters. Never a 500, never a request left without an answer."""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import quote

import pytest

from pipeline_core.api.http import error_body, json_bytes
from tests.api.conftest import Client
from tests.api.engine_system import System, trigger

EDGE_DATES = [
    "0001-01-01T00:00:00+14:00",  # before the range once in UTC
    "0001-01-01T00:00:00-00:00",
    "0001-01-01",
    "0001-01-02T00:00:00Z",  # the first supported instant
    "0001-01-02T00:00:00+23:59",
    "9999-12-30T23:59:59.999999Z",  # the last one
    "9999-12-31T23:59:59-05:00",
    "9999-12-31",
    "9999-12-30T23:59:59-23:59",
]


@pytest.fixture(scope="module")
def system(module_system: System) -> System:
    """One deployment for the whole module: its tests do not depend on each other's runs."""
    return module_system


@pytest.fixture
def client(system: System) -> Client:
    return Client(system.server.port)


def _answered(status: int, body: Any, field: str) -> None:
    """A correct answer, or a 400 that names the field; never a 500."""
    assert status < 500, body
    if status == 400:
        assert field in body["error"]["message"], body


@pytest.mark.parametrize("value", EDGE_DATES)
@pytest.mark.parametrize(
    "name",
    [
        *(f"{c}_{s}" for c in ("logical_date", "start_date", "end_date") for s in ("gte", "lte")),
    ],
)
def test_run_filters_at_the_ends_of_the_range(client, name, value):
    status, _, body = client.request("GET", f"/api/v1/dags/etl/runs?{name}={quote(value)}")
    _answered(status, body, name)


@pytest.mark.parametrize("value", EDGE_DATES)
@pytest.mark.parametrize("name", ["since", "until"])
def test_stats_windows_at_the_ends_of_the_range(client, name, value):
    status, _, body = client.request("GET", f"/api/v1/dags/etl/stats?{name}={quote(value)}")
    _answered(status, body, name)


@pytest.mark.parametrize("value", EDGE_DATES)
def test_a_triggers_logical_date_at_the_ends_of_the_range(system, value):
    status, _, body = trigger(system, "flaky", {"logical_date": value})
    _answered(status, body, "logical_date")
    if status == 201:
        run = system.wait_state("flaky", body["data"]["run_id"], {"success", "failed"})
        assert run["logical_date"].startswith(value[:4])


@pytest.mark.parametrize("end", EDGE_DATES)
@pytest.mark.parametrize("start", EDGE_DATES)
def test_backfill_ranges_at_the_ends_of_the_range(client, start, end):
    status, _, body = client.request(
        "POST", "/api/v1/dags/etl/backfills", {"from": start, "to": end, "dry_run": True}
    )
    assert status < 500, body
    if status == 400:
        message = body["error"]["message"]
        assert any(part in message for part in ("'from'", "'to'", "reversed", "more than"))


def test_a_backfill_at_the_end_of_the_range_lists_its_dates(client):
    status, _, body = client.request(
        "POST",
        "/api/v1/dags/etl/backfills",
        {"from": "9999-12-01", "to": "9999-12-30", "dry_run": True},
    )
    assert status == 200
    dates = [d["logical_date"] for d in body["data"]["dates"]]
    assert len(dates) == 30 and dates[-1] == "9999-12-30T06:00:00.000000Z"
    status, _, body = client.request(
        "POST",
        "/api/v1/dags/etl/backfills",
        {"from": "0001-01-02", "to": "0001-01-04", "dry_run": True},
    )
    assert status == 200 and body["data"]["runs"] == 3


def test_a_range_outside_the_supported_one_is_a_400_naming_it(client):
    status, _, body = client.request(
        "POST", "/api/v1/dags/etl/backfills", {"from": "0001-01-01T00:00:00-00:00", "to": "2026"}
    )
    assert status == 400
    assert body["error"]["message"].startswith("'from': date/time")
    assert "0001-01-02T00:00:00Z to 9999-12-30T23:59:59.999999Z" in body["error"]["message"]


UNSTORABLE = ['"\\ud800"', '"a\\udfffb"', '"nul\\u0000"']
#: Each JSON body with a place for a string: (method, path, body with ``S`` for the string).
BODIES = [
    ("POST", "/api/v1/dags/etl/runs", '{"conf": {"x": S}}'),
    ("POST", "/api/v1/dags/etl/runs", '{"conf": {S: 1}}'),
    ("POST", "/api/v1/dags/etl/runs", '{"note": S}'),
    ("POST", "/api/v1/dags/etl/runs", '{"run_id": S}'),
    ("POST", "/api/v1/dags/etl/runs", '{"idempotency_key": S}'),
    ("POST", "/api/v1/dags/etl/runs", '{"logical_date": S}'),
    ("POST", "/api/v1/dags/etl/runs/r1/clear", '{"task_ids": [S]}'),
    ("POST", "/api/v1/dags/etl/runs/r1/retry", '{"task_ids": [S]}'),
    ("PATCH", "/api/v1/dags/etl/runs/r1", '{"note": S}'),
    ("PATCH", "/api/v1/dags/etl/runs/r1/tasks/extract", '{"state": S}'),
    ("PATCH", "/api/v1/dags/etl", '{"is_paused": S}'),
    ("POST", "/api/v1/pools", '{"name": S, "slots": 1}'),
    ("POST", "/api/v1/pools", '{"name": "p", "slots": 1, "description": S}'),
    ("PATCH", "/api/v1/pools/default_pool", '{"description": S}'),
    ("POST", "/api/v1/dags/etl/backfills", '{"from": S, "to": "2026-01-02"}'),
]


@pytest.fixture(scope="module")
def first_run(system: System) -> str:
    trigger(system, "etl", {"run_id": "r1"})
    system.wait_state("etl", "r1", {"success"})
    return "r1"


@pytest.mark.parametrize("text", UNSTORABLE)
@pytest.mark.parametrize(("method", "path", "template"), BODIES)
def test_strings_no_store_keeps_are_refused_with_an_encodable_400(
    system, client, first_run, method, path, template, text
):
    raw = template.replace("S", text).encode()
    status, _, body = client.request(
        method, path, raw=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 400, body
    assert "not storable text" in body["error"]["message"]
    assert [(p.name, p.description) for p in system.store.pools.list_pools()] == [
        ("default_pool", "Default pool")
    ]
    assert [r["run_id"] for r in client.request("GET", "/api/v1/dags/etl/runs")[2]["data"]] == [
        "r1"
    ]


def test_every_other_string_is_stored_and_read_back(system, client):
    text = "é € 😀 \u2028 \t \x7f \U0010ffff"
    status, _, _ = trigger(
        system, "flaky", {"conf": {text: [text]}, "note": text, "run_id": "unicode"}
    )
    assert status == 201
    run = system.wait_state("flaky", "unicode", {"success", "failed"})
    assert run["conf"] == {text: [text]} and run["note"] == text


def test_an_answer_quoting_a_lone_surrogate_can_still_be_sent():
    """Messages that repeat a value are encodable whatever it holds: text UTF-8 cannot
    carry goes out as JSON escapes."""
    sent = error_body("invalid_request", "bad value '\ud800'", {"field": "\udfff"})
    assert json.loads(sent)["error"]["details"]["field"] == "\udfff"
    assert json.loads(json_bytes({"é": "\ud800"})) == {"é": "\ud800"}


@pytest.mark.parametrize("name", [".", ".."])
def test_ids_no_url_can_address_are_refused_at_creation(system, client, name):
    status, _, body = trigger(system, "etl", {"run_id": name})
    assert status == 400 and "(not '.' or '..')" in body["error"]["message"]
    status, _, body = client.request("POST", "/api/v1/pools", {"name": name, "slots": 1})
    assert status == 400 and "(not '.' or '..')" in body["error"]["message"]
    assert [p.name for p in system.store.pools.list_pools()] == ["default_pool"]


def _pipelined_after_head(port: int, path: str) -> tuple[bytes, bytes]:
    """A HEAD of ``path`` and a GET pipelined after it on one connection; both answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
            "GET /api/v1/version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    return head, rest


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/events",
        "/api/v1/dags/etl/runs/r1/tasks/extract/logs?follow=true",
        "/api/v1/dags",
    ],
)
def test_head_never_sends_a_body_streams_included(system, first_run, path):
    head, rest = _pipelined_after_head(system.server.port, path)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert rest.startswith(b"HTTP/1.1 200 OK"), rest[:200]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["data"]["api_version"] == "v1"


def test_head_on_a_stream_through_http_client(system):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", system.server.port, timeout=10)
    connection.request("HEAD", "/api/v1/events")
    response = connection.getresponse()
    assert response.status == 200 and response.read() == b""
    assert response.getheader("Content-Type", "").startswith("text/event-stream")
    connection.request("GET", "/api/v1/version")
    assert json.loads(connection.getresponse().read())["data"]["api_version"] == "v1"
    connection.close()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("dag_id=", "dag_id"),
        ("dag_id=etl%0A", "dag_id"),
        ("dag_id=%C3%A9tl", "dag_id"),
        ("dag_id=..", "dag_id"),
        ("run_id=", "run_id"),
        ("run_id=r1%0A", "run_id"),
        ("run_id=r%C3%BC", "run_id"),
    ],
)
def test_the_event_stream_checks_ids_as_every_route_does(client, query, field):
    status, _, body = client.request("GET", f"/api/v1/events?{query}")
    assert status == 400 and f"'{field}'" in body["error"]["message"]


def test_xcom_pages_with_limit_and_offset(system, client, first_run):
    path = "/api/v1/dags/etl/runs/r1/tasks/load/xcom"
    status, _, body = client.request("GET", f"{path}?limit=1&offset=0")
    assert status == 200 and len(body["data"]) == 1
    assert body["meta"] == {"total": 1, "limit": 1, "offset": 0, "has_more": False}
    status, _, body = client.request("GET", f"{path}?offset=1")
    assert status == 200 and body["data"] == [] and body["meta"]["total"] == 1
    status, _, body = client.request("GET", f"{path}?limit=0")
    assert status == 400 and "'limit'" in body["error"]["message"]
