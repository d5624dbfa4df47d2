"""``GET /api/v3/srt``: the SRT server's channels in Core's shape (``api.SRTChannels``).

``{"publisher": {resource: socket id}, "subscriber": {resource: [socket ids]},
"connections": {socket id: {"log": {}, "stats": {...}}}, "log": {}}`` — Core's
``http/handler/api/srt.go``. Behind the API's normal ``/api/v3`` authentication. Registered
while the SRT server is enabled (Core has no route otherwise); when it is enabled but libsrt
cannot be loaded, :func:`srt_unavailable_blueprint` answers ``503`` with the reason instead.
"""

from __future__ import annotations

from trio_core.http.errors import ApiError, json_response
from trio_core.srt.server import SrtServer
from trio_core.web import Blueprint, Response

__all__ = ["srt_blueprint", "srt_unavailable_blueprint"]


def srt_blueprint(server: SrtServer) -> Blueprint:
    """The blueprint serving ``server.channels()``."""
    bp = Blueprint("srt", __name__)

    @bp.get("/api/v3/srt")
    async def list_channels() -> Response:
        return json_response(server.channels())

    return bp


def srt_unavailable_blueprint(reason: str) -> Blueprint:
    """``GET /api/v3/srt`` → 503 ``{"code":503,"message":"Service Unavailable","details":[...]}``
    saying that SRT is enabled but cannot run, and why (``reason``)."""
    bp = Blueprint("srt", __name__)

    @bp.get("/api/v3/srt")
    async def unavailable() -> Response:
        raise ApiError(503, "Service Unavailable", reason)

    return bp
