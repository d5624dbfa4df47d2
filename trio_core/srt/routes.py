"""``GET /api/v3/srt``: the SRT server's channels in Core's shape (``api.SRTChannels``).

``{"publisher": {resource: socket id}, "subscriber": {resource: [socket ids]},
"connections": {socket id: {"log": {}, "stats": {...}}}, "log": {}}`` — Core's
``http/handler/api/srt.go``. Behind the API's normal ``/api/v3`` authentication. Registered
only while the SRT server is enabled and libsrt is available (Core has no route otherwise).
"""

from __future__ import annotations

from quart import Blueprint, Response

from ..api.errors import json_response
from .server import SrtServer

__all__ = ["srt_blueprint"]


def srt_blueprint(server: SrtServer) -> Blueprint:
    """The blueprint serving ``server.channels()``."""
    bp = Blueprint("srt", __name__)

    @bp.get("/api/v3/srt")
    async def list_channels() -> Response:
        return json_response(server.channels())

    return bp
