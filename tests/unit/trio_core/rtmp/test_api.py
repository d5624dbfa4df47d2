"""trio_core.rtmp.api: ``GET /api/v3/rtmp`` lists the published paths, behind the API's auth."""

from __future__ import annotations

from trio_core.http.auth import Authenticator
from trio_core.http.errors import install_error_handlers
from trio_core.rtmp.api import rtmp_blueprint
from trio_core.web import App


class Paths:
    def channels(self) -> list[str]:
        return ["live/a", "live/b"]


def app_with(auth: Authenticator) -> App:
    app = App(__name__)
    install_error_handlers(app)
    auth.install(app)
    app.register_blueprint(rtmp_blueprint(Paths(), auth))  # type: ignore[arg-type]
    return app


async def test_lists_the_paths_and_needs_a_token_when_auth_is_on() -> None:
    open_app = app_with(Authenticator(enabled=False))
    resp = await open_app.test_client().get("/api/v3/rtmp")
    assert resp.status_code == 200
    assert await resp.get_json() == [{"name": "live/a"}, {"name": "live/b"}]
    auth = Authenticator(enabled=True, username="u", password="p", secret="s" * 32)
    client = app_with(auth).test_client()
    assert (await client.get("/api/v3/rtmp")).status_code == 401
    token = auth.issue("u", "access")
    ok = await client.get("/api/v3/rtmp", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
