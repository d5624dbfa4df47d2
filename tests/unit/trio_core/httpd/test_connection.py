"""The sans-IO HTTP/1.1 connection: request parsing, bodies, limits, response framing."""

from __future__ import annotations

import json

import pytest

from trio_core.httpd.connection import (
    CLOSED,
    DRAIN_LIMIT,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    Connection,
    Data,
    HttpError,
    Limits,
    Request,
)


def feed(conn: Connection, data: bytes) -> list[object]:
    conn.receive_data(data)
    events = []
    while True:
        event = conn.next_event()
        if event in (NEED_DATA, PAUSED, CLOSED):
            events.append(event)
            return events
        events.append(event)


def test_simple_get_and_keep_alive() -> None:
    conn = Connection()
    events = feed(conn, b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Y:  z \r\n\r\n")
    request = events[0]
    assert isinstance(request, Request)
    assert (request.method, request.target, request.http_version) == ("GET", b"/a?b=1", "1.1")
    assert request.headers == [(b"host", b"x"), (b"x-y", b"z")]
    assert not request.has_body and events[1] is PAUSED
    head = conn.response_head(200, [(b"Content-Type", b"text/plain")], 5)
    assert head.startswith(b"HTTP/1.1 200 OK\r\ndate: ")
    assert b"content-type: text/plain\r\ncontent-length: 5\r\n\r\n" in head
    assert conn.body_pieces(b"hello") == [b"hello"]
    assert conn.end_pieces() == []
    assert conn.keep_alive and conn.idle and not conn.unread
    assert feed(conn, b"") == [CLOSED]


def test_pipelined_requests_wait_for_the_answer() -> None:
    conn = Connection()
    events = feed(conn, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(e) for e in events] == [Request, type(PAUSED)]
    assert conn.buffered > 0
    conn.response_head(204, [])
    conn.end_pieces()
    second = conn.next_event()
    assert isinstance(second, Request) and second.target == b"/2"
    assert conn.requests == 2


def test_content_length_body_in_pieces() -> None:
    conn = Connection()
    events = feed(conn, b"PUT /f HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123")
    assert isinstance(events[0], Request) and events[0].has_body
    assert isinstance(events[1], Data) and events[1].data == b"0123" and not events[1].end
    events = feed(conn, b"456789GET")
    assert isinstance(events[0], Data) and events[0].data == b"456789" and events[0].end
    assert events[1] is PAUSED


def test_chunked_body_with_extensions_and_trailers() -> None:
    conn = Connection()
    data = (b"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    events = feed(conn, data)
    assert isinstance(events[0], Request) and events[0].chunked
    body = b"".join(e.data for e in events if isinstance(e, Data))
    assert body == b"hello world"
    assert END_OF_MESSAGE in events and events[-1] is PAUSED


def test_chunked_body_byte_by_byte() -> None:
    conn = Connection()
    data = (b"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n")
    events: list[object] = []
    for i in range(len(data)):
        events += [e for e in feed(conn, data[i:i + 1]) if e is not NEED_DATA]
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"abc"
    assert END_OF_MESSAGE in events


@pytest.mark.parametrize(("data", "status", "words"), [
    (b"GET / HTTP/1.1\r\n\r\n", 400, "Host"),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "version"),
    (b"GET /\r\nHost: x\r\n\r\n", 400, "request line"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400, "Content-Length"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400,
     "conflicting"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "gzip"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
     400, "both"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, "folding"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400, "malformed header"),
])
def test_bad_requests(data: bytes, status: int, words: str) -> None:
    conn = Connection()
    conn.receive_data(data)
    with pytest.raises(HttpError) as info:
        conn.next_event()
    assert info.value.status == status and words in info.value.message
    assert conn.unread  # the shell lingers before closing: the client may still be sending
    answer = conn.error_response(info.value)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status) and b"connection: close" in head
    assert json.loads(body)["details"] == [info.value.message]
    assert not conn.keep_alive


def test_head_too_large_is_431_and_long_request_line_414() -> None:
    conn = Connection(Limits(max_head=1024))
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"a" * 2000)
    with pytest.raises(HttpError) as info:
        conn.next_event()
    assert info.value.status == 431 and "1024 bytes" in info.value.message
    conn = Connection(Limits(max_head=1024))
    conn.receive_data(b"GET /" + b"a" * 2000)
    with pytest.raises(HttpError) as info:
        conn.next_event()
    assert info.value.status == 414
    conn = Connection(Limits(max_headers=3))
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 3 + b"\r\n")
    with pytest.raises(HttpError) as info:
        conn.next_event()
    assert info.value.status == 431 and "3 header lines" in info.value.message


def test_body_limit_413_for_length_and_chunks() -> None:
    conn = Connection(Limits(max_body=10))
    conn.receive_data(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
    with pytest.raises(HttpError) as info:
        conn.next_event()
    assert info.value.status == 413 and "11 bytes" in info.value.message
    conn = Connection(Limits(max_body=10))
    events = feed(conn, b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"8\r\n12345678\r\n")
    assert isinstance(events[1], Data)
    conn.receive_data(b"8\r\n12345678\r\n")
    with pytest.raises(HttpError) as info:
        conn.next_event()
    assert info.value.status == 413


def test_expect_continue_sent_once_only_when_reading() -> None:
    conn = Connection()
    events = feed(conn, b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                        b"Content-Length: 3\r\n\r\n")
    assert isinstance(events[0], Request) and events[0].expect_continue
    assert conn.continue_response() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert conn.continue_response() == b""


def test_answer_before_a_held_back_body_closes() -> None:
    """A 401 to an ``Expect: 100-continue`` request whose body never came: close after it."""
    conn = Connection()
    feed(conn, b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    head = conn.response_head(401, [(b"content-length", b"0")])
    assert b"connection: close" in head
    conn.end_pieces()
    assert not conn.keep_alive


def test_small_unread_body_is_drained_then_next_request() -> None:
    conn = Connection()
    feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    head = conn.response_head(404, [], 0)
    assert b"connection: close" not in head
    conn.end_pieces()
    assert conn.next_event() is NEED_DATA
    events = feed(conn, b"cdeGET /n HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(events[0], Request) and events[0].target == b"/n"


def test_large_unread_body_closes() -> None:
    conn = Connection()
    feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (DRAIN_LIMIT + 1))
    head = conn.response_head(413, [], 0)
    assert b"connection: close" in head


def test_chunked_response_and_head_requests() -> None:
    conn = Connection()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = conn.response_head(200, [])
    assert b"transfer-encoding: chunked" in head
    assert conn.body_pieces(b"abc") == [b"3\r\n", b"abc", b"\r\n"]
    assert conn.end_pieces() == [b"0\r\n\r\n"]
    feed(conn, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = conn.response_head(200, [(b"content-length", b"100")])
    assert b"content-length: 100" in head and b"chunked" not in head
    assert conn.body_pieces(b"x" * 100) == []
    assert conn.end_pieces() == [] and conn.keep_alive


def test_short_body_closes_and_http10_closes() -> None:
    conn = Connection()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.response_head(200, [(b"content-length", b"10")])
    conn.body_pieces(b"12345")
    conn.end_pieces()
    assert not conn.keep_alive
    conn = Connection()
    events = feed(conn, b"GET / HTTP/1.0\r\n\r\n")
    assert isinstance(events[0], Request) and not events[0].keep_alive
    head = conn.response_head(200, [])
    assert b"connection: close" in head and b"chunked" not in head


def test_connection_close_and_bodyless_statuses() -> None:
    conn = Connection()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = conn.response_head(204, [], 0)
    assert b"content-length" not in head and b"connection: close" in head


def test_header_injection_refused() -> None:
    conn = Connection()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ValueError):
        conn.response_head(200, [(b"location", b"/a\r\nx: y")], 0)


def test_mid_body_close_is_closed() -> None:
    conn = Connection()
    feed(conn, b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12")
    assert feed(conn, b"") == [CLOSED]
