"""JWT auth over real HTTP, the bind policy, and the extension points for other routes."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import jwt
import trio

from tests.helpers.api import Api, assert_error, make_config, running_server, tiny_process
from trio_core.http.auth import Authenticator
from trio_core.server import Services, serve
from trio_core.web import Blueprint, Response

AUTH = {"api.auth.enable": True, "api.auth.username": "admin", "api.auth.password": "s3cret"}


async def test_login_and_protected_routes(tmp_path: Path, ffmpeg: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg, **AUTH)) as srv:
        srv.services.auth.login_delay = 0.05
        anon = Api(srv.url)
        assert (await anon.get("/api")).status_code == 200  # about stays public
        body = assert_error(await anon.get("/api/v3/process"), 401)
        assert body["message"] == "Unauthorized"
        assert_error(await anon.post("/api/v3/process", tiny_process("a")), 401)
        assert_error(await anon.get("/api/v3/process/a/state"), 401)
        assert_error(await anon.get("/api/v3/process", headers={"Authorization": "Bearer junk"}), 401)
        assert_error(await anon.get("/api/v3/no-such-route"), 401)

        assert_error(await anon.post("/api/login", {"username": "admin", "password": "wrong"}), 401)
        assert_error(await anon.post("/api/login", {"username": "admin"}), 400)
        assert_error(await anon.request("POST", "/api/login", content=b"{"), 400)

        resp = await anon.post("/api/login", {"username": "admin", "password": "s3cret"})
        assert resp.status_code == 200, resp.text
        tokens = resp.json()
        assert set(tokens) == {"access_token", "refresh_token"}
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        assert claims["sub"] == "admin" and claims["usefor"] == "access"
        assert claims["exp"] > claims["iat"]

        api = Api(srv.url, tokens["access_token"])
        assert (await api.get("/api/v3/process")).json() == []
        resp = await api.post("/api/v3/process", tiny_process("a", autostart=False))
        assert resp.status_code == 200, resp.text
        assert (await api.get("/api/v3/process/a/config")).json()["id"] == "a"

        # the refresh token is not an access token, and vice versa
        assert_error(await Api(srv.url, tokens["refresh_token"]).get("/api/v3/process"), 401)
        assert_error(await api.get("/api/login/refresh"), 401)
        refreshed = await Api(srv.url, tokens["refresh_token"]).get("/api/login/refresh")
        assert refreshed.status_code == 200
        new_access = refreshed.json()["access_token"]
        assert (await Api(srv.url, new_access).get("/api/v3/process/a")).status_code == 200

        # a token signed with another key is rejected
        forged = jwt.encode({**claims}, "another-signing-key-that-is-long-enough-1234", algorithm="HS256")
        assert_error(await Api(srv.url, forged).get("/api/v3/process"), 401)


async def test_login_when_auth_disabled(tmp_path: Path, ffmpeg: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        assert_error(await api.post("/api/login", {"username": "a", "password": "b"}), 404)  # as Core
        assert (await api.get("/api/v3/process")).status_code == 200


class _TokenRoutes:
    """A subsystem-shaped plug-in using the auth extension points (like WHEP will)."""

    def __init__(self, services: Services) -> None:
        bp = Blueprint("extra", __name__)
        auth = services.auth

        def per_process_token(request: object) -> bool:
            return getattr(request, "args", {}).get("token") == "view-token"

        @bp.get("/api/v3/process/<pid>/viewer")
        @auth.require_auth(per_process_token)
        async def viewer(pid: str) -> Response:
            return Response(f"viewer {pid}")

        @bp.get("/api/v3/open")
        @auth.public
        async def open_route() -> Response:
            return Response("open")

        @bp.get("/api/v3/closed")
        async def closed_route() -> Response:
            return Response("closed")

        services.app.register_blueprint(bp)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()


async def test_auth_extension_points(tmp_path: Path, ffmpeg: str) -> None:
    config = make_config(tmp_path, ffmpeg, **AUTH)
    async with trio.open_nursery() as nursery:
        srv = await nursery.start(partial(serve, config, subsystems=lambda s: [_TokenRoutes(s)]))
        try:
            anon = Api(srv.url)
            assert_error(await anon.get("/api/v3/process/x/viewer"), 401)
            assert (await anon.get("/api/v3/process/x/viewer?token=view-token")).text == "viewer x"
            assert (await anon.get("/api/v3/open")).text == "open"
            assert_error(await anon.get("/api/v3/closed"), 401)
            # the alternative credential only opens its own route
            assert_error(await anon.get("/api/v3/process?token=view-token"), 401)
            auth: Authenticator = srv.services.auth
            api = Api(srv.url, auth.issue("admin", "access"))
            assert (await api.get("/api/v3/process/x/viewer")).text == "viewer x"
            assert (await api.get("/api/v3/closed")).text == "closed"
        finally:
            srv.shutdown()
