"""The API's error body ``{"code", "message", "details"}`` (datarhei shape) and helpers.

Handlers raise :class:`ApiError`; :func:`install_error_handlers` turns it, and every other
HTTP error (unknown route, wrong method, uncaught exception -> 500), into that JSON shape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as ``{"code": status, "message": message, "details": [...]}``."""

    def __init__(
        self, status: int, message: str, details: str | Sequence[str] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = [details] if isinstance(details, str) else list(details)
        self.headers = headers or {}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (compact, UTF-8)."""
    return Response(
        json.dumps(payload, separators=(",", ":")), status=status,
        content_type="application/json", headers=headers,
    )


def error_response(
    status: int, message: str, details: str | Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    """The datarhei error body as a response."""
    detail_list = [details] if isinstance(details, str) else list(details)
    body = {"code": status, "message": message, "details": detail_list}
    if request.method == "HEAD":
        return Response(b"", status=status, headers=headers)
    return json_response(body, status, headers)


def install_error_handlers(app: Quart) -> None:
    """Answer ApiError, HTTP errors and uncaught exceptions with the JSON error body."""

    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        return error_response(error.status, error.message, error.details, error.headers)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        headers = {}
        if status == 405 and getattr(error, "valid_methods", None):
            headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return error_response(status, error.name, error.description or "", headers)

    @app.errorhandler(Exception)
    async def _internal(error: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "Internal Server Error", f"{type(error).__name__}: {error}")


async def read_json() -> Any:
    """Parse the request body as JSON or raise ApiError(400, "Invalid JSON", details)."""
    data = await request.get_data()
    if not data:
        raise ApiError(400, "Invalid JSON", "request doesn't contain any content")
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise ApiError(400, "Invalid JSON", "request body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "Invalid JSON",
            f"{exc.msg} at line {exc.lineno}, character {exc.colno}",
        ) from None
