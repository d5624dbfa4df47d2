"""Request and Response: werkzeug's sans-IO wrappers with an awaitable body.

:class:`Request` reads its body from the ASGI ``receive`` callable on the first
:meth:`Request.get_data` (once; later calls return the same bytes), refusing a body over
``max_content_length`` with werkzeug's ``RequestEntityTooLarge`` (413) — by its declared
``Content-Length`` before reading anything, else as soon as the pieces exceed it — and a body
the client abandoned half-way with ``ClientDisconnected`` (a partial body is never taken for
the whole). Reading is cancellable like any trio read (the connection's timeouts bound it).

:class:`Response` carries a bytes body (a ``str`` is encoded as UTF-8) and sets
``Content-Length`` for it; the default type is ``text/html; charset=utf-8`` (werkzeug's, as
Quart's responses). ``get_data``/``get_json`` are awaitable, as in Quart's API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import trio
from werkzeug.datastructures import Headers
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.routing import Rule
from werkzeug.sansio.request import Request as SansIORequest
from werkzeug.sansio.response import Response as SansIOResponse

__all__ = ["Receive", "Request", "Response"]

#: the ASGI ``receive`` callable a request's body comes from
Receive = Callable[[], Awaitable[dict[str, Any]]]


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class Request(SansIORequest):
    """One HTTP request; routing fills :attr:`url_rule`, :attr:`view_args`, :attr:`endpoint`."""

    def __init__(
        self, method: str, scheme: str, server: tuple[str, int | None] | None, root_path: str,
        path: str, query_string: bytes, headers: Headers, remote_addr: str | None, *,
        receive: Receive = _no_body, max_content_length: int | None = None,
        http_version: str = "1.1", scope: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(method, scheme, server, root_path, path, query_string, headers,
                         remote_addr)
        self.http_version = http_version
        self.scope = scope or {}
        self.max_content_length = max_content_length
        self.url_rule: Rule | None = None
        self.view_args: dict[str, Any] = {}
        self.routing_exception: Exception | None = None
        self._receive = receive
        self._body: bytes | None = None
        self._reading = trio.Lock()
        #: set once the whole body arrived (:meth:`get_data`)
        self.body_complete = trio.Event()

    @property
    def has_body(self) -> bool:
        """Whether the request declares a body (a non-zero length, or a transfer coding)."""
        return bool(self.content_length) or "Transfer-Encoding" in self.headers

    @property
    def endpoint(self) -> str | None:
        return self.url_rule.endpoint if self.url_rule is not None else None

    async def get_data(self, as_text: bool = False) -> Any:
        """The whole body (read on the first call; 413 over ``max_content_length``)."""
        async with self._reading:
            if self._body is None:
                self._body = await self._read_body()
                self.body_complete.set()
        return self._body.decode() if as_text else self._body

    async def _read_body(self) -> bytes:
        limit = self.max_content_length
        declared = self.content_length
        if limit is not None and declared is not None and declared > limit:
            raise RequestEntityTooLarge()
        pieces: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] != "http.request":
                raise ClientDisconnected()  # a partial body is never taken for the body
            piece = message.get("body", b"")
            if piece:
                size += len(piece)
                if limit is not None and size > limit:
                    raise RequestEntityTooLarge()
                pieces.append(piece)
            if not message.get("more_body", False):
                break
        return b"".join(pieces)

    async def get_json(self) -> Any:
        """The body parsed as JSON (``json.loads``; errors propagate)."""
        return json.loads(await self.get_data())


class Response(SansIOResponse):
    """A response with a bytes body (``str`` bodies are encoded as UTF-8)."""

    default_mimetype = "text/html"  # Quart's (werkzeug's sans-IO default is text/plain)

    def __init__(
        self, response: bytes | str = b"", status: int | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | Headers | None = None,
        mimetype: str | None = None, content_type: str | None = None,
    ) -> None:
        super().__init__(status, headers, mimetype, content_type)
        self.set_data(response)

    def set_data(self, data: bytes | str) -> None:
        """Replace the body (and its ``Content-Length``)."""
        self.data = data.encode() if isinstance(data, str) else bytes(data)
        self.headers["Content-Length"] = str(len(self.data))

    async def get_data(self, as_text: bool = False) -> Any:
        return self.data.decode() if as_text else self.data

    async def get_json(self) -> Any:
        return json.loads(self.data)
