"""trio_core.web.testing: the test client sends JSON and raw bodies and returns what the app
sent (no default type added)."""

from __future__ import annotations

from trio_core.web import App, Response, request
from trio_core.web.testing import TestClient


async def test_client_bodies_and_headers() -> None:
    app = App(__name__)

    @app.route("/echo", methods=["POST"])
    async def echo() -> Response:
        response = Response(await request.get_data(), 200,
                            {"X-Type": request.headers.get("Content-Type", "")})
        del response.headers["Content-Type"]
        return response

    client = TestClient(app)
    resp = await client.post("/echo", json={"a": [1]})
    assert await resp.get_json() == {"a": [1]} and resp.headers["X-Type"] == "application/json"
    raw = await client.post("/echo", data="text", headers={"Content-Type": "text/plain"})
    assert await raw.get_data() == b"text" and "Content-Type" not in raw.headers
