"""The API's error body ``{"code", "message", "details"}`` (datarhei shape) and helpers.

Handlers raise :class:`ApiError`; :func:`install_error_handlers` turns it, and every other
HTTP error (unknown route, wrong method, too large body, uncaught exception -> 500), into that
JSON shape. A 500 never carries exception text: it is logged with a request id, and the
response carries the same id (``X-Request-ID`` header and ``request_id`` in the body), so an
operator can find the traceback.

:func:`read_json` (and :func:`bind_json`, which also wants a JSON Content-Type, as Core's
``ShouldBindJSON``) is the one way handlers read a JSON body: bounded in size (the app's
``MAX_CONTENT_LENGTH`` -> 413), depth (:data:`MAX_JSON_DEPTH`) and integer length
(:data:`MAX_INT_DIGITS`); every parse failure is a 400 with a plain message. All of it is
synchronous apart from reading the body (cancellable like any request read).

Every answer of the app, error or not, is sent only after the request body was read to its end
(an ``after_request`` hook, bounded by ``MAX_CONTENT_LENGTH``): with a body left unread,
hypercorn + Quart left some keep-alive requests unanswered (kept under trio-core's own server: it reads the rest
anyway before the next request). A failed ``HEAD`` is answered as
Core does: the status alone, without body or Content-Type.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Sequence
from typing import Any

from werkzeug.exceptions import HTTPException

from trio_core.http.go_json import JSON_CONTENT_TYPE
from trio_core.web import App, Response, request

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
        json.dumps(payload, separators=(",", ":")) + "\n", status=status,
        content_type=JSON_CONTENT_TYPE, headers=headers,
    )


def error_response(
    status: int, message: str, details: str | Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    """The datarhei error body as a response."""
    detail_list = [details] if isinstance(details, str) else list(details)
    body = {"code": status, "message": message, "details": detail_list}
    if request.method == "HEAD":
        return _head_error(status, headers)
    return json_response(body, status, headers)


def _head_error(status: int, headers: dict[str, str] | None) -> Response:
    """A failed HEAD as Core answers it: the status alone, no body and no Content-Type."""
    response = Response(b"", status=status, headers=headers)
    del response.headers["Content-Type"]
    return response


REQUEST_ID_HEADER = "X-Request-ID"
MAX_JSON_DEPTH = 64  # objects/arrays nested deeper than this are refused
MAX_INT_DIGITS = 40  # no API value needs an integer longer than this


def install_error_handlers(app: App) -> None:
    """Answer ApiError, HTTP errors and uncaught exceptions with the JSON error body; every
    answer (error or not) first reads what is left of the request body (:func:`_drain_body`)."""

    app.after_request(_drain_body)

    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        return error_response(error.status, error.message, error.details, error.headers)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status in (404, 405):  # Core (echo): no such route, or not with this method
            return error_response(404, "Not Found", "Not Found")
        return error_response(status, error.name, error.description or "")

    @app.errorhandler(Exception)
    async def _internal(error: Exception) -> Response:
        request_id = uuid.uuid4().hex
        log.error("internal error (request id %s) in %s %s", request_id, request.method,
                  request.path, exc_info=error)
        headers = {REQUEST_ID_HEADER: request_id}
        if request.method == "HEAD":
            return _head_error(500, headers)
        return json_response(
            {"code": 500, "message": "Internal Server Error",
             "details": [f"internal error; request id {request_id}"], "request_id": request_id},
            500, headers,
        )


async def _drain_body(response: Response) -> Response:
    """after_request: read the rest of a request body the handler did not read (bounded by
    ``MAX_CONTENT_LENGTH``; a body over it stays unread, as for the 413 answer).

    Answering while the body was still unread (a GET with a body, a 404/405 route, an early 4xx)
    left about 1 keep-alive request in 10 without any response under hypercorn + Quart (the server
before issue 23)."""
    try:
        await request.get_data()
    except HTTPException:
        pass
    return response


class _TooLong(ValueError):
    pass


class _NotFinite(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _TooLong(text)
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _parse_constant(text: str) -> Any:
    raise _NotFinite(text)  # NaN, Infinity, -Infinity are not JSON


def _too_deep(value: Any) -> bool:
    """True when ``value`` nests objects/arrays deeper than MAX_JSON_DEPTH (iterative walk)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json(data: bytes) -> Any:
    """Parse ``data`` as bounded JSON; ApiError(400, "Invalid JSON", <plain reason>) otherwise."""
    if not data:
        raise ApiError(400, "Invalid JSON", "request doesn't contain any content")
    try:
        value = json.loads(
            data.decode("utf-8"), parse_int=_parse_int, parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except UnicodeDecodeError:
        raise ApiError(400, "Invalid JSON", "request body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "Invalid JSON",
            f"{exc.msg} at line {exc.lineno}, character {exc.colno}",
        ) from None
    except _TooLong:
        raise ApiError(
            400, "Invalid JSON", f"an integer has more than {MAX_INT_DIGITS} digits"
        ) from None
    except _NotFinite:
        raise ApiError(400, "Invalid JSON", "numbers must be finite") from None
    except RecursionError:
        raise ApiError(
            400, "Invalid JSON", f"nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError:  # any other value the decoder refuses
        raise ApiError(400, "Invalid JSON", "unparsable value") from None
    if _too_deep(value):
        raise ApiError(400, "Invalid JSON", f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


async def read_json() -> Any:
    """Read the request body and parse it with :func:`parse_json` (400s as described there)."""
    return parse_json(await request.get_data())


def json_content_problem() -> str | None:
    """Core's ``ShouldBindJSON`` preconditions: the reason the request is refused, or None."""
    if request.content_length == 0:
        return "request doesn't contain any content"
    if not (request.headers.get("Content-Type") or "").startswith("application/json"):
        return "request doesn't contain JSON content"
    return None


async def bind_json() -> Any:
    """Like Core's ``ShouldBindJSON``: a JSON Content-Type is required, then :func:`read_json`
    (400 ``Invalid JSON`` otherwise)."""
    problem = json_content_problem()
    if problem:
        raise ApiError(400, "Invalid JSON", problem)
    return await read_json()
