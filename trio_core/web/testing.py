"""An in-process test client: requests go through the app's ASGI entry (middleware too).

``await client.get(path, headers=…)`` (also ``post``/``put``/``delete``/``patch``/``options``/
``head``, with ``data=`` bytes/str or ``json=``) returns the
:class:`~trio_core.web.wrappers.Response` the app sent: ``status_code``, ``headers``,
``await get_data()`` and ``await get_json()``.
"""

from __future__ import annotations

import json as jsonlib
from typing import Any
from urllib.parse import unquote

import trio

from trio_core.web.wrappers import Response

__all__ = ["TestClient"]


class TestClient:
    """Sends requests to ``app`` (any ASGI app) as a client on 127.0.0.1 would."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: Any) -> None:
        self.app = app

    async def open(self, path: str, method: str = "GET", *, headers: dict[str, str] | None = None,
                   data: bytes | str | None = None, json: Any = None) -> Response:
        head = dict(headers or {})
        body = b""
        if json is not None:
            body = jsonlib.dumps(json).encode()
            head.setdefault("Content-Type", "application/json")
        elif data is not None:
            body = data.encode() if isinstance(data, str) else data
        if body or method in ("POST", "PUT", "PATCH"):
            head.setdefault("Content-Length", str(len(body)))
        head.setdefault("Host", "localhost")
        raw_path, _, query = path.partition("?")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": unquote(raw_path),
            "raw_path": raw_path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in head.items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80), "extensions": {},
        }
        sent_body = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if sent_body:
                await trio.sleep_forever()  # the client stays until the answer
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}

        start: dict[str, Any] = {}
        pieces: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                pieces.append(bytes(message.get("body", b"")))

        await self.app(scope, receive, send)
        sent = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", ())]
        response = Response(b"".join(pieces), start["status"], sent)
        if not any(k.lower() == "content-type" for k, _ in sent):
            del response.headers["Content-Type"]  # as sent: no default type added
        return response

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.open(path, "GET", **kwargs)

    async def head(self, path: str, **kwargs: Any) -> Response:
        return await self.open(path, "HEAD", **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Response:
        return await self.open(path, "POST", **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Response:
        return await self.open(path, "PUT", **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Response:
        return await self.open(path, "DELETE", **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Response:
        return await self.open(path, "PATCH", **kwargs)

    async def options(self, path: str, **kwargs: Any) -> Response:
        return await self.open(path, "OPTIONS", **kwargs)
