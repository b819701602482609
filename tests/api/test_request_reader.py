"""``RequestReader`` alone: bytes in, whole requests or one refusal out, in order."""

from __future__ import annotations

import pytest

from pipeline_core.api.transport.request_reader import (
    MAX_HEAD_BYTES,
    Parsed,
    Refusal,
    RequestReader,
)

GET = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
CHUNKED = b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"


def read(*pieces: bytes, end: bool = False, limit: int = 1024) -> list[Parsed | Refusal]:
    reader = RequestReader(limit)
    for piece in pieces:
        reader.feed(piece)
    if end:
        reader.end()
    return list(reader.ready)


def test_pipelined_requests_come_out_in_order_with_their_bodies():
    items = read(GET + CHUNKED + GET)
    assert [(i.request.method, i.request.path, i.request.body) for i in items] == [  # type: ignore[union-attr]
        ("GET", "/a", b""),
        ("POST", "/b", b"abc"),
        ("GET", "/a", b""),
    ]
    assert items[0].request.query_string == "x=1" and items[0].request.headers == {"host": "h"}  # type: ignore[union-attr]


def test_a_request_split_byte_by_byte_is_the_same_request():
    whole = read(CHUNKED)
    pieces = read(*(CHUNKED[i : i + 1] for i in range(len(CHUNKED))))
    assert pieces == whole and len(whole) == 1


def test_a_refusal_ends_reading_after_the_requests_before_it():
    smuggled = b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    items = read(GET + smuggled + GET)
    assert isinstance(items[0], Parsed) and len(items) == 2
    assert items[1] == Refusal(
        400, "invalid_request", "malformed request: Duplicate Content-Length"
    )


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400, "without a Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "host appears 2 times"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400, "gzip"),
        (b"GET / HTTP/2.7\r\nHost: a\r\n\r\n", 400, "Invalid HTTP version"),
        (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, "HTTP/0.9"),
        (b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 501, "unknown request method"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", 413, "5000 bytes"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n", 400, "malformed request"),
    ],
)
def test_what_the_server_refuses(data, status, words):
    (item,) = read(data)
    assert isinstance(item, Refusal) and item.status == status and words in item.message


def test_a_chunked_body_over_the_limit_is_refused_while_it_arrives():
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    (item,) = read(head, b"400\r\n" + b"x" * 1024 + b"\r\n", b"400\r\n" + b"x" * 1024 + b"\r\n")
    assert isinstance(item, Refusal) and item.status == 413


def test_oversized_heads_are_refused_without_waiting_for_their_end():
    long_line = b"GET /" + b"a" * (MAX_HEAD_BYTES + 10)
    assert read(long_line)[0].status == 414  # type: ignore[union-attr]
    many = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Pad: %s\r\n" % (b"p" * 1000) * 70
    assert read(many)[0].status == 431  # type: ignore[union-attr]
    one_value = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: "
    assert read(one_value, b"v" * MAX_HEAD_BYTES, b"v")[0].status == 431  # type: ignore[union-attr]
    lines = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: 1\r\n" * 101
    assert read(lines)[0].status == 431  # type: ignore[union-attr]


def test_input_that_ends_mid_request_is_refused_never_executed():
    (item,) = read(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc", end=True)
    assert isinstance(item, Refusal) and "ended mid-request" in item.message
    assert read(b"GET / HTTP/1.1\r\nHost:", end=True)[0].status == 400  # type: ignore[union-attr]
    assert read(GET, end=True)[0] == read(GET)[0]


def test_keep_alive_follows_version_and_connection_header():
    assert not read(b"GET / HTTP/1.0\r\n\r\n")[0].keep_alive  # type: ignore[union-attr]
    closing = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x, close\r\n\r\n"
    assert not read(closing)[0].keep_alive  # type: ignore[union-attr]
    assert read(GET)[0].keep_alive  # type: ignore[union-attr]
    # What a client sends after announcing the end is refused, never read as a request.
    assert isinstance(read(closing + GET)[1], Refusal)


def test_an_upgrade_request_is_answered_and_nothing_after_it_is_read():
    upgrade = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    reader = RequestReader(1024)
    reader.feed(upgrade + b"\x81\x05hello" + GET)
    assert len(reader.ready) == 1 and reader.ended


def test_expect_continue_is_noticed_for_a_body_only():
    reader = RequestReader(1024)
    reader.feed(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert reader.wants_continue and reader.in_body
    reader.feed(b"ok")
    assert not reader.wants_continue and reader.ready[0].request.body == b"ok"  # type: ignore[union-attr]
