"""The transport against raw sockets: strict HTTP/1.1 framing (nothing smuggled, nothing
truncated is executed), deadlines, the connection cap, polite early errors and 100-continue."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request

import pytest

from pipeline_core.store import open_store
from tests.api.conftest import Client, serve


@pytest.fixture
def store(tmp_path):  # type: ignore[no-untyped-def]
    created = open_store(f"sqlite:///{tmp_path / 'api.db'}")
    yield created
    created.close()


def exchange(port: int, *parts: bytes, pause: float = 0.0, shut: bool = False) -> bytes:
    """Send ``parts`` (``pause`` between them; ``shut``: then end the input) and read until
    the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        for part in parts:
            conn.sendall(part)
            if pause:
                time.sleep(pause)
        if shut:
            conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def pool_post(headers: bytes, body: bytes) -> bytes:
    return (
        b"POST /api/v1/pools HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + headers
        + b"\r\n"
        + body
    )


SMUGGLED = b"GET /api/v1/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
POOL = b'{"name": "smuggled", "slots": 1}'


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (b"Transfer-Encoding: xchunked\r\n", b"Transfer-Encoding"),
        (b"Transfer-Encoding: gzip, chunked\r\n", b"Transfer-Encoding"),
        (b"Content-Length: 32\r\nContent-Length: 40\r\n", b"Duplicate Content-Length"),
        (b"Content-Length: 32\r\nContent-Length: 32\r\n", b"Duplicate Content-Length"),
        (b"Content-Length: 32, 40\r\n", b"Content-Length"),
        (b"Content-Length: +32\r\n", b"Content-Length"),
        (b"Content-Length: 3_2\r\n", b"Content-Length"),
        (b"Content-Length: 0x20\r\n", b"Content-Length"),
        (b"Content-Length: 32\r\nTransfer-Encoding: chunked\r\n", b"can't be present with"),
        (b"Host: evil.example\r\nContent-Length: 32\r\n", b"host appears 2 times"),
        (
            b"Content-Length: 32\r\nX-Folded: a\r\n b\r\n",
            b"Unexpected whitespace after header value",
        ),
    ],
    ids=[
        "xchunked",
        "gzip-chunked",
        "two-lengths",
        "equal-lengths",
        "length-list",
        "plus",
        "underscore",
        "hex",
        "length-and-chunked",
        "two-hosts",
        "obs-fold",
    ],
)
def test_ambiguous_framing_is_refused_and_nothing_runs(server, store, headers, reason):
    answer = exchange(server.port, pool_post(headers, POOL + SMUGGLED))
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1") == 1  # no second, smuggled request was answered
    assert b'"code":"invalid_request"' in answer and reason in answer
    assert b"Connection: close" in answer
    assert pool_names(store) == ["default_pool"]


def test_a_missing_host_on_http_1_1_is_refused(server):
    answer = exchange(server.port, b"GET /api/v1/version HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Host" in answer


def test_http_1_0_without_host_is_served_and_closed(server):
    answer = exchange(server.port, b"GET /api/v1/version HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer


def pool_names(store) -> list[str]:  # type: ignore[no-untyped-def]
    return [p.name for p in store.pools.list_pools()]


def test_truncated_heads_and_bodies_are_never_executed(server, store):
    head_only = pool_post(b"Content-Length: 32\r\n", b"")[:-4]  # no blank line
    answer = exchange(server.port, head_only, shut=True)
    assert answer.startswith(b"HTTP/1.1 400 ") or answer == b""
    short_body = pool_post(b"Content-Length: 100\r\n", POOL)
    answer = exchange(server.port, short_body, shut=True)
    assert answer.startswith(b"HTTP/1.1 400 ") or answer == b""
    assert "smuggled" not in pool_names(store)


def test_chunked_request_bodies_are_decoded(server, store):
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(POOL), POOL)
    answer = exchange(
        server.port, pool_post(b"Transfer-Encoding: chunked\r\nConnection: close\r\n", body)
    )
    assert answer.startswith(b"HTTP/1.1 201 ")
    assert "smuggled" in pool_names(store)


def test_pipelined_requests_are_answered_in_order(server):
    version = b"GET /api/v1/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    last = b"GET /api/v1/nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    answer = exchange(server.port, version + version + last)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert statuses == [b"200", b"200", b"404"]


def test_a_trickled_head_is_cut_off_at_its_deadline(store):
    server = serve(store, head_timeout=0.5)
    try:
        started = time.monotonic()
        lines = [b"GET /api/v1/version HTTP/1.1\r\n"] + [b"X-Slow: %d\r\n" % i for i in range(20)]
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            answer = b""
            try:
                for line in lines:
                    conn.sendall(line)
                    time.sleep(0.1)
            except OSError:
                pass  # closed while trickling
            while chunk := conn.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 ") and b"request head took too long" in answer
        assert time.monotonic() - started < 1.8
    finally:
        server.stop()


def test_a_stalled_body_is_cut_off_at_its_deadline(store):
    server = serve(store, body_timeout=0.4)
    try:
        answer = exchange(server.port, pool_post(b"Content-Length: 100\r\n", POOL))
        assert answer.startswith(b"HTTP/1.1 408 ") and b"request body took too long" in answer
        assert pool_names(store) == ["default_pool"]
    finally:
        server.stop()


def test_over_the_connection_cap_the_longest_idle_connection_makes_room(store):
    server = serve(store, max_connections=4)
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    try:
        status, _, _ = Client(server.port).request("GET", "/api/v1/health")
        assert status == 200
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""  # the oldest idle one was closed for it
    finally:
        for conn in idle:
            conn.close()
        server.stop()


def test_when_every_connection_is_busy_a_newcomer_gets_503_with_retry_after(store):
    server = serve(store, max_connections=3)
    busy = []
    try:
        for _ in range(3):  # each in the middle of a body: not to be dropped
            conn = socket.create_connection(("127.0.0.1", server.port))
            conn.sendall(pool_post(b"Content-Length: 100\r\n", b"{"))
            busy.append(conn)
        time.sleep(0.2)  # (a real client cannot tell the server to have read them)
        answer = exchange(server.port)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in answer
        assert b'"code":"unavailable"' in answer
    finally:
        for conn in busy:
            conn.close()
        server.stop()


@pytest.mark.parametrize("megabytes", [2, 8])
def test_urllib_reads_the_413_of_an_oversized_body(server, store, megabytes):
    data = b"x" * (megabytes * 1024 * 1024)
    for _ in range(10 if megabytes == 2 else 3):
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/api/v1/pools",
            data=data,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 413
        assert json.loads(caught.value.read())["error"]["code"] == "payload_too_large"
    assert pool_names(store) == ["default_pool"]


def test_expect_100_continue(server, store):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        head = pool_post(
            b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n" % len(POOL), b""
        )
        conn.sendall(head)
        assert conn.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(POOL)
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201 ")
    too_big = pool_post(b"Content-Length: 99999999\r\nExpect: 100-continue\r\n", b"")
    answer = exchange(server.port, too_big)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer
