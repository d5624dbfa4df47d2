"""``GET /api/v3/rtmp``: the paths being published, in Core's shape ``[{"name": "/live/x"}]``
(``http/handler/api/rtmp.go``); protected like the rest of ``/api/v3``."""

from __future__ import annotations

from trio_core.http.auth import Authenticator
from trio_core.http.errors import json_response
from trio_core.rtmp.server import RtmpServer
from trio_core.web import Blueprint, Response

__all__ = ["rtmp_blueprint"]


def rtmp_blueprint(server: RtmpServer, auth: Authenticator) -> Blueprint:
    bp = Blueprint("rtmp", __name__)

    @bp.get("/api/v3/rtmp")
    @auth.require_auth()
    async def list_channels() -> Response:
        return json_response([{"name": name} for name in server.channels()])

    return bp
