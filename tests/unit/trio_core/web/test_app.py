"""trio_core.web.app: Quart's request steps — routing failures kept until after
``before_request``, automatic OPTIONS/HEAD, error handlers by code then MRO, ``after_request``
in reverse order, teardown also on cancellation, and the ASGI entry cancelling a request whose
client left."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from werkzeug.exceptions import HTTPException, NotFound

from trio_core.web import App, Blueprint, Response, g, request
from trio_core.web.app import App as AppClass


def app_with_routes() -> App:
    app = App(__name__)

    @app.get("/things/<name>")
    async def thing(name: str) -> Response:
        return Response(f"thing {name}")

    @app.route("/echo", methods=["POST", "PUT"])
    async def echo() -> Response:
        return Response(await request.get_data(), content_type="application/octet-stream")

    @app.get("/dir/")
    async def directory() -> str:
        return "dir"

    return app


async def test_routes_methods_and_automatic_options_and_head() -> None:
    client = app_with_routes().test_client()
    resp = await client.get("/things/a%20b")
    assert resp.status_code == 200 and await resp.get_data() == b"thing a b"
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Content-Length"] == "9"
    head = await client.head("/things/x")  # HEAD comes with GET (the server drops the body)
    assert head.status_code == 200 and head.headers["Content-Length"] == "7"
    options = await client.options("/echo")
    assert options.status_code == 200
    assert set(options.headers["Allow"].split(", ")) == {"POST", "PUT", "OPTIONS"}
    assert (await client.get("/echo")).status_code == 405  # no handler: werkzeug's answer
    assert (await client.get("/nothing")).status_code == 404
    slash = await client.get("/dir")  # strict slashes: a redirect to the rule's form
    assert slash.status_code == 308 and slash.headers["Location"].endswith("/dir/")
    put = await client.put("/echo", data=b"\x00body")
    assert await put.get_data() == b"\x00body"


async def test_before_request_runs_first_even_for_unknown_paths_and_can_answer() -> None:
    app = app_with_routes()
    seen: list[str] = []

    @app.before_request
    async def guard() -> Response | None:
        seen.append(request.path)
        return Response("stop", 403) if request.path.startswith("/nothing") else None

    client = app.test_client()
    assert (await client.get("/nothing")).status_code == 403  # before the 404 is raised
    assert (await client.get("/things/a")).status_code == 200
    assert seen == ["/nothing", "/things/a"]


async def test_error_handlers_by_code_then_by_class() -> None:
    app = App(__name__)

    class Oops(Exception):
        pass

    @app.get("/oops")
    async def oops() -> Response:
        raise Oops("x")

    @app.get("/gone")
    async def gone() -> Response:
        raise NotFound()

    @app.errorhandler(404)
    async def not_found(error: HTTPException) -> Response:
        return Response("by code", 404)

    @app.errorhandler(HTTPException)
    async def http(error: HTTPException) -> Response:
        return Response(f"http {error.code}", error.code or 500)

    @app.errorhandler(Exception)
    async def anything(error: Exception) -> Response:
        return Response(f"caught {type(error).__name__}", 500)

    client = app.test_client()
    assert await (await client.get("/gone")).get_data() == b"by code"
    assert await (await client.get("/missing")).get_data() == b"by code"
    assert await (await client.get("/oops")).get_data() == b"caught Oops"
    resp = await client.post("/oops")  # 405 has no code handler: the HTTPException one
    assert resp.status_code == 405 and await resp.get_data() == b"http 405"


async def test_unhandled_errors_are_500_and_after_request_runs_in_reverse_order() -> None:
    app = App(__name__)
    order: list[str] = []

    @app.get("/boom")
    async def boom() -> Response:
        raise RuntimeError("no handler")

    @app.get("/fine")
    async def fine() -> dict[str, Any]:
        return {"ok": True}

    for name in ("first", "second"):
        @app.after_request
        async def note(response: Response, name: str = name) -> Response:
            order.append(name)
            response.headers[f"X-{name}"] = "1"
            return response

    client = app.test_client()
    resp = await client.get("/boom")
    assert resp.status_code == 500 and resp.headers["X-first"] == "1"
    fine_resp = await client.get("/fine")
    assert await fine_resp.get_json() == {"ok": True}
    assert fine_resp.headers["Content-Type"] == "application/json"
    assert order == ["second", "first", "second", "first"]


def test_results_become_responses() -> None:
    make = AppClass.make_response
    assert make(("body", 201)).status_code == 201
    assert make(("body", {"X-A": "1"})).headers["X-A"] == "1"
    resp = make((b"raw", 202, {"X-B": "2"}))
    assert resp.status_code == 202 and resp.data == b"raw" and resp.headers["X-B"] == "2"
    assert make(NotFound()).status_code == 404
    with pytest.raises(TypeError):
        make(None)


async def test_blueprints_prefix_names_and_the_same_blueprint_twice() -> None:
    bp = Blueprint("items", __name__, url_prefix="/api/items")

    @bp.get("/<int:number>")
    async def item(number: int) -> str:
        return f"{request.endpoint} {number * 2}"

    app = App(__name__)
    app.register_blueprint(bp)
    app.register_blueprint(bp, url_prefix="/local/items", name="local_items")
    client = app.test_client()
    assert await (await client.get("/api/items/21")).get_data() == b"items.item 42"
    assert await (await client.get("/local/items/2")).get_data() == b"local_items.item 4"
    assert (await client.get("/api/items/x")).status_code == 404  # the int converter
    assert set(app.view_functions) == {"items.item", "local_items.item"}
    with pytest.raises(ValueError):
        app.register_blueprint(Blueprint("items", __name__))


async def test_g_and_teardown_also_when_the_client_leaves() -> None:
    app = App(__name__)
    torn: list[tuple[str, bool]] = []
    started = trio.Event()

    @app.get("/slow")
    async def slow() -> str:
        g.name = "slow"
        started.set()
        await trio.sleep_forever()
        return "never"

    @app.teardown_request
    async def teardown(error: BaseException | None) -> None:
        torn.append((g.get("name"), isinstance(error, trio.Cancelled)))

    disconnect = trio.Event()
    sent: list[dict[str, Any]] = []
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/slow", "query_string": b"",
             "headers": [(b"host", b"x")], "client": ("127.0.0.1", 1)}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, scope, receive, send)
        await started.wait()
        disconnect.set()
    assert torn == [("slow", True)] and sent == []  # cancelled, torn down, not answered
