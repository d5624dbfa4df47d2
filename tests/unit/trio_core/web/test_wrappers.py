"""trio_core.web.wrappers: the request body read on demand and bounded, a partial body never
taken for the whole, responses with their length and werkzeug's default type."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.datastructures import Headers
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from trio_core.web.wrappers import Request, Response


def request_with(messages: list[dict[str, Any]], length: int | None = None,
                 limit: int | None = 10) -> tuple[Request, list[int]]:
    calls: list[int] = []

    async def receive() -> dict[str, Any]:
        calls.append(1)
        return messages.pop(0)

    headers = Headers({"Content-Length": str(length)} if length is not None else {})
    return Request("POST", "http", None, "", "/x", b"a=1&a=2", headers, "127.0.0.1",
                   receive=receive, max_content_length=limit), calls


def piece(data: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


async def test_body_is_read_once_in_pieces() -> None:
    req, calls = request_with([piece(b"abc", True), piece(b"de", False)], 5)
    assert req.has_body and not req.body_complete.is_set()
    assert await req.get_data() == b"abcde"
    assert await req.get_data(as_text=True) == "abcde" and len(calls) == 2
    assert req.body_complete.is_set()
    assert req.args.getlist("a") == ["1", "2"] and req.remote_addr == "127.0.0.1"


async def test_declared_or_streamed_bodies_over_the_limit_are_413() -> None:
    declared, calls = request_with([piece(b"x", False)], 11)
    with pytest.raises(RequestEntityTooLarge):
        await declared.get_data()
    assert calls == []  # refused before anything was read
    streamed, _ = request_with([piece(b"x" * 6, True), piece(b"x" * 6, False)])
    with pytest.raises(RequestEntityTooLarge):
        await streamed.get_data()


async def test_a_client_that_leaves_mid_body_is_not_a_body() -> None:
    req, _ = request_with([piece(b"half", True), {"type": "http.disconnect"}], 8)
    with pytest.raises(ClientDisconnected):
        await req.get_data()


async def test_responses() -> None:
    resp = Response("héllo", 201, {"X-A": "1"})
    assert resp.status_code == 201 and resp.data == "héllo".encode()
    assert resp.headers["Content-Length"] == str(len("héllo".encode()))
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert await resp.get_data(as_text=True) == "héllo"
    typed = Response(b'{"a": 1}', content_type="application/json")
    assert typed.headers["Content-Type"] == "application/json" and await typed.get_json() == {"a": 1}
    typed.set_data(b"")
    assert typed.headers["Content-Length"] == "0"
