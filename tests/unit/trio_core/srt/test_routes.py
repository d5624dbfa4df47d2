"""trio_core.srt.routes: ``GET /api/v3/srt`` answers the server's channel list as JSON."""

from __future__ import annotations

from typing import Any

from trio_core.srt.routes import srt_blueprint
from trio_core.web import App


class Channels:
    def channels(self) -> dict[str, Any]:
        return {"connections": {}, "log": {}, "publisher": {"live": 1}, "subscriber": {}}


async def test_lists_the_channels() -> None:
    app = App(__name__)
    app.register_blueprint(srt_blueprint(Channels()))  # type: ignore[arg-type]
    resp = await app.test_client().get("/api/v3/srt")
    assert resp.status_code == 200
    assert await resp.get_json() == Channels().channels()
