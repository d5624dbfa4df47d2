"""The OpenAPI 3 document of the whole API, generated from the app's routes, and Swagger UI.

:func:`build_openapi` walks ``app.url_map`` when asked, so every route registered by any
blueprint (process, WHEP, storage, RTMP, …) is in the document without anyone listing it.
Each operation gets: the path with ``{parameters}`` (typed from werkzeug converters), the
methods (``HEAD`` and automatic ``OPTIONS`` left out; an ``OPTIONS``-only route is kept),
a summary (the view's docstring's first line), a tag (its blueprint), the security
requirement (``ApiKeyAuth`` bearer JWT under ``/api/v3`` unless the view is public, see
:mod:`trio_core.http.auth`) and the datarhei ``Error`` body for errors. A view may declare
more with :func:`doc` (summary, tags, parameters, request and response schemas), which the
document then carries; views of other modules are described by :data:`KNOWN_OPERATIONS`
(keyed by endpoint name) so that their files need no change. Routes answered below the
App app (the storage mounts' ASGI layer: ``/memfs/*``, ``/api/v3/fs/{storage}/{path}``,
the disk mount) are :class:`ExternalRoute` entries the composition root collects and hands
to :func:`swagger_blueprint`.

Routes: ``GET /api/swagger/doc.json`` (the document), ``GET /api/swagger/index.html``
(Swagger UI from the ``swagger-ui-bundle`` package's files, served locally, no CDN),
``GET /api/swagger/<file>`` (its assets). No authentication, as Core.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from werkzeug.exceptions import NotFound

from trio_core import __version__
from trio_core.http.auth import AUTH_ATTR
from trio_core.http.errors import json_response
from trio_core.web import App, Blueprint, Response, current_app, redirect, send_from_directory

__all__ = ["DOC_ATTR", "KNOWN_OPERATIONS", "SCHEMAS", "ExternalRoute", "build_openapi", "doc",
           "swagger_blueprint"]

DOC_ATTR = "_trio_core_openapi"
F = TypeVar("F", bound=Callable[..., Any])

_CONVERTER_TYPES = {"int": "integer", "float": "number"}
_RULE_ARG = re.compile(r"<(?:([a-zA-Z_][a-zA-Z0-9_]*)(?:\([^)]*\))?:)?([a-zA-Z_][a-zA-Z0-9_]*)>")
_SKIP_METHODS = {"HEAD"}
_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 406: "Not Acceptable",
            409: "Conflict", 413: "Payload Too Large", 415: "Unsupported Media Type",
            422: "Unprocessable Entity", 500: "Internal Server Error", 509: "Limit Exceeded"}


def doc(*, summary: str | None = None, description: str | None = None,
        tags: list[str] | None = None, parameters: list[dict[str, Any]] | None = None,
        request: dict[str, Any] | None = None, request_type: str = "application/json",
        responses: dict[int, dict[str, Any] | None] | None = None,
        produces: str = "application/json", security: bool | None = None) -> Callable[[F], F]:
    """Declare OpenAPI details of a view (apply below the route decorator).

    ``responses`` maps status -> JSON schema of the body (None: the datarhei ``Error`` body
    for 4xx/5xx, no body otherwise). ``security`` None = derived from the path and the
    view's auth marker.
    """

    def decorate(view: F) -> F:
        setattr(view, DOC_ATTR, {
            "summary": summary, "description": description, "tags": tags,
            "parameters": parameters or [], "request": request, "request_type": request_type,
            "responses": responses or {}, "produces": produces, "security": security,
        })
        return view

    return decorate


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


#: Component schemas referenced by :data:`KNOWN_OPERATIONS` (Core's ``api.*`` types, the
#: fields trio-core implements).
SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {"type": "object", "properties": {
        "code": {"type": "integer"}, "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "string"}}}},
    "About": {"type": "object", "properties": {
        "app": {"type": "string"}, "name": {"type": "string"},
        "auths": {"type": "array", "items": {"type": "string"}},
        "created_at": {"type": "string"}, "uptime_seconds": {"type": "integer"},
        "version": {"type": "object", "properties": {"number": {"type": "string"},
                                                     "api": {"type": "string"}}}}},
    "Login": {"type": "object", "required": ["username", "password"], "properties": {
        "username": {"type": "string"}, "password": {"type": "string"}}},
    "JWT": {"type": "object", "properties": {
        "access_token": {"type": "string"}, "refresh_token": {"type": "string"}}},
    "ProcessConfigIO": {"type": "object", "required": ["id", "address"], "properties": {
        "id": {"type": "string"}, "address": {"type": "string"},
        "options": {"type": "array", "items": {"type": "string"}}}},
    "ProcessConfig": {"type": "object", "required": ["input", "output"], "properties": {
        "id": {"type": "string"}, "type": {"type": "string"},
        "reference": {"type": "string"},
        "input": {"type": "array", "items": _ref("ProcessConfigIO")},
        "output": {"type": "array", "items": _ref("ProcessConfigIO")},
        "options": {"type": "array", "items": {"type": "string"}},
        "reconnect": {"type": "boolean"}, "reconnect_delay_seconds": {"type": "integer"},
        "autostart": {"type": "boolean"}, "stale_timeout_seconds": {"type": "integer"},
        "limits": {"type": "object", "properties": {
            "cpu_usage": {"type": "number"}, "memory_mbytes": {"type": "integer"},
            "waitfor_seconds": {"type": "integer"}}},
        "webrtc": {"type": "object", "description": "trio-core: WHEP playback",
                   "properties": {"enabled": {"type": "boolean"},
                                  "video_pt": {"type": "integer"},
                                  "audio_pt": {"type": "integer"},
                                  "force_transcode": {"type": "boolean"},
                                  "token": {"type": "string"}}}}},
    "ProcessState": {"type": "object", "properties": {
        "order": {"type": "string"}, "exec": {"type": "string"},
        "runtime_seconds": {"type": "integer"}, "reconnect_seconds": {"type": "integer"},
        "last_logline": {"type": "string"}, "progress": {"type": "object"},
        "memory_bytes": {"type": "integer"}, "cpu_usage": {"type": "number"},
        "command": {"type": "array", "items": {"type": "string"}},
        "webrtc": {"type": "object", "description": "trio-core: source and viewers"}}},
    "ProcessReport": {"type": "object", "properties": {
        "created_at": {"type": "integer"},
        "prelude": {"type": "array", "items": {"type": "string"}},
        "log": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
        "history": {"type": "array", "items": {"type": "object"}}}},
    "Process": {"type": "object", "properties": {
        "id": {"type": "string"}, "type": {"type": "string"},
        "reference": {"type": "string"}, "created_at": {"type": "integer"},
        "updated_at": {"type": "integer"}, "config": _ref("ProcessConfig"),
        "state": _ref("ProcessState"), "report": _ref("ProcessReport"),
        "metadata": {}}},
    "Command": {"type": "object", "required": ["command"], "properties": {
        "command": {"type": "string", "enum": ["start", "stop", "restart", "reload"]}}},
}

_SDP = {"type": "string", "description": "SDP"}
_FILTER = [{"name": "filter", "in": "query", "required": False, "schema": {"type": "string"},
            "description": "Comma separated list of fields (config, state, report, metadata)"}]

#: Declarations for views registered by other modules (used when a view has no ``@doc``),
#: keyed by endpoint name; ``(summary, tags, request, responses)`` per method.
KNOWN_OPERATIONS: dict[str, dict[str, Any]] = {
    "about": {"summary": "API information", "tags": ["v16.7.2"], "security": False,
              "responses": {200: _ref("About")}},
    "ping": {"summary": "Liveliness check", "tags": ["v16.7.2"], "produces": "text/plain",
             "responses": {200: {"type": "string"}}},
    "auth.login": {"summary": "Retrieve an access and a refresh token", "tags": ["v16.7.2"],
                   "request": _ref("Login"),
                   "responses": {200: _ref("JWT"), 400: None, 401: None}},
    "auth.refresh": {"summary": "Retrieve a new access token", "tags": ["v16.7.2"],
                     "responses": {200: _ref("JWT"), 401: None}},
    "process.list_processes": {
        "summary": "List all known processes", "tags": ["v16.7.2"],
        "parameters": [*_FILTER] + [
            {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
            for n in ("reference", "id", "idpattern", "refpattern")],
        "responses": {200: {"type": "array", "items": _ref("Process")}, 400: None}},
    "process.add_process": {"summary": "Add a new process", "tags": ["v16.7.2"],
                            "request": _ref("ProcessConfig"),
                            "responses": {200: _ref("ProcessConfig"), 400: None, 409: None}},
    "process.get_process": {"summary": "List a process by its ID", "tags": ["v16.7.2"],
                            "parameters": _FILTER,
                            "responses": {200: _ref("Process"), 404: None}},
    "process.update_process": {"summary": "Replace an existing process", "tags": ["v16.7.2"],
                               "request": _ref("ProcessConfig"),
                               "responses": {200: _ref("ProcessConfig"), 400: None,
                                             404: None, 409: None}},
    "process.delete_process": {"summary": "Delete a process by its ID", "tags": ["v16.7.2"],
                               "responses": {200: {"type": "string"}, 404: None}},
    "process.command": {"summary": "Issue a command to a process", "tags": ["v16.7.2"],
                        "request": _ref("Command"),
                        "responses": {200: {"type": "string"}, 400: None, 404: None}},
    "process.get_config": {"summary": "Get the configuration of a process",
                           "tags": ["v16.7.2"],
                           "responses": {200: _ref("ProcessConfig"), 404: None}},
    "process.get_state": {"summary": "Get the state of a process", "tags": ["v16.7.2"],
                          "responses": {200: _ref("ProcessState"), 404: None}},
    "process.get_report": {"summary": "Get the logs of a process", "tags": ["v16.7.2"],
                           "responses": {200: _ref("ProcessReport"), 404: None}},
    # checked in the view: the API token, or the process's viewer token (webrtc.token, as
    # Bearer or ?token=); PATCH/DELETE are public (the secret session URL is the credential)
    "whep.whep_post": {"summary": "Start a WHEP (WebRTC) viewer session", "tags": ["webrtc"],
                       "security": True,
                       "request": _SDP, "request_type": "application/sdp",
                       "produces": "application/sdp",
                       "responses": {201: _SDP, 400: None, 401: None, 404: None, 406: None,
                                     409: None, 413: None, 415: None, 503: None, 509: None}},
    "whep.whep_delete": {"summary": "End a WHEP session", "tags": ["webrtc"],
                         "responses": {204: None, 404: None}},
    "whep.whep_patch": {"summary": "Trickle ICE (204, ignored: ICE-lite) or ICE restart "
                                   "(200: the server's new ufrag/pwd, new ETag)",
                        "tags": ["webrtc"], "request": {"type": "string"},
                        "request_type": "application/trickle-ice-sdpfrag",
                        "produces": "application/trickle-ice-sdpfrag",
                        "responses": {200: {"type": "string"}, 204: None, 400: None, 404: None,
                                      412: None, 413: None, 415: None}},
}


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params: list[dict[str, Any]] = []

    def sub(m: re.Match[str]) -> str:
        converter, name = m.group(1) or "default", m.group(2)
        params.append({"name": name, "in": "path", "required": True,
                       "schema": {"type": _CONVERTER_TYPES.get(converter, "string")}})
        return "{" + name + "}"

    return _RULE_ARG.sub(sub, rule), params


def _operation_id(endpoint: str, method: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{endpoint}-{method.lower()}")


def _error_response(status: int) -> dict[str, Any]:
    return {"description": _REASONS.get(status, "Error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


@dataclass(frozen=True)
class ExternalRoute:
    """A route answered below the App app (an ASGI layer such as the storage mounts),
    documented like a view: ``rule`` in werkzeug syntax, ``declared`` as :func:`doc`'s
    keywords; ``security_scheme`` names the scheme instead of the derived ``ApiKeyAuth``
    (``"BasicAuth"`` for memfs writes)."""

    rule: str
    methods: tuple[str, ...]
    endpoint: str
    declared: dict[str, Any] = field(default_factory=dict)
    security_scheme: str | None = None


def build_openapi(app: App, external: Sequence[ExternalRoute] = (), *,
                  title: str = "trio-core API") -> dict[str, Any]:
    """The OpenAPI 3.0 document of every route registered on ``app`` right now (its URL
    map) plus the routes answered below it (``external``)."""
    paths: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        if view is None:
            continue
        methods = set(rule.methods or ()) - _SKIP_METHODS
        if methods != {"OPTIONS"}:
            methods.discard("OPTIONS")  # automatic OPTIONS: not an operation of its own
        declared: dict[str, Any] = getattr(view, DOC_ATTR, None) or {}
        if not declared and rule.endpoint in KNOWN_OPERATIONS:
            declared = {**KNOWN_OPERATIONS[rule.endpoint]}
        docstring = (view.__doc__ or "").strip().splitlines()
        _add_operations(paths, used, rule.rule, rule.endpoint, methods, declared,
                        getattr(view, AUTH_ATTR, None), docstring[0] if docstring else None)
    for route in external:
        declared = {**route.declared}
        if route.security_scheme is not None:
            declared["security_scheme"] = route.security_scheme
        _add_operations(paths, used, route.rule, route.endpoint,
                        set(route.methods) - _SKIP_METHODS, declared, None, None)
    return _document(paths, title)


def _add_operations(paths: dict[str, dict[str, Any]], used: set[str], rule: str,
                    endpoint: str, methods: set[str], declared: dict[str, Any],
                    auth_marker: Any, first_doc_line: str | None) -> None:
    """Add the operations of one route (``declared``: :func:`doc`'s keywords, may be partial)."""
    declared = {"parameters": [], "request_type": "application/json",
                "produces": "application/json", "security": None, **declared}
    path, path_params = _path(rule)
    scheme = declared.get("security_scheme")
    if declared.get("security") is not None:
        secured = bool(declared["security"])
    else:
        secured = scheme is not None or (
            (path == "/api/v3" or path.startswith("/api/v3/")) and auth_marker != "public")
    summary = declared.get("summary") or first_doc_line or endpoint
    tag = endpoint.split(".", 1)[0] if "." in endpoint else "core"
    for method in sorted(methods):
        op_id = _operation_id(endpoint, method)
        if op_id in used:  # one view on several rules
            op_id = _operation_id(f"{endpoint}-{path}", method)
        used.add(op_id)
        op: dict[str, Any] = {
            "operationId": op_id,
            "summary": summary,
            "tags": declared.get("tags") or [tag],
        }
        if declared.get("description"):
            op["description"] = declared["description"]
        names = {p["name"] for p in path_params}
        params = path_params + [p for p in declared.get("parameters", [])
                                if p.get("name") not in names]
        if params:
            op["parameters"] = params
        if declared.get("request") is not None and method in ("POST", "PUT", "PATCH"):
            op["requestBody"] = {"required": True, "content": {
                declared["request_type"]: {"schema": declared["request"]}}}
        responses: dict[str, Any] = {}
        for status, schema in sorted((declared.get("responses") or {}).items()):
            if status >= 400 and schema is None:
                responses[str(status)] = _error_response(status)
            elif schema is None:
                responses[str(status)] = {"description": _REASONS.get(status, "OK")}
            else:
                responses[str(status)] = {"description": _REASONS.get(status, "OK"),
                                          "content": {declared.get("produces",
                                                                   "application/json"):
                                                      {"schema": schema}}}
        if not any(s.startswith("2") for s in responses):
            responses["200"] = {"description": "OK"}
        # a scheme that applies to some methods only (memfs: writes) is listed per method
        applies = declared.get("secured_methods")
        if secured and (applies is None or method in applies):
            op["security"] = [{scheme or "ApiKeyAuth": []}]
            responses.setdefault("401", _error_response(401))
            if auth_marker not in (None, "public"):
                op["description"] = (op.get("description", "") + " Also accepts the "
                                     "route's own credentials (e.g. a process's WebRTC "
                                     "token).").strip()
        if path_params:
            responses.setdefault("404", _error_response(404))
        op["responses"] = responses
        paths.setdefault(path, {})[method.lower()] = op


def _document(paths: dict[str, dict[str, Any]], title: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": __version__,
                 "description": "datarhei Core v16.16 compatible API with WebRTC (WHEP) "
                                "playback; generated from the registered routes."},
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "ApiKeyAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "BasicAuth": {"type": "http", "scheme": "basic"},
            },
            "schemas": SCHEMAS,
        },
    }


_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>trio-core API</title>
<link rel="stylesheet" href="swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="swagger-ui-bundle.js"></script>
<script src="swagger-ui-standalone-preset.js"></script>
<script src="swagger-initializer.local.js"></script>
</body></html>
"""
_INIT = """window.onload = function () {
  window.ui = SwaggerUIBundle({url: "doc.json", dom_id: "#swagger-ui", deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"});
};
"""


def swagger_blueprint(external: Sequence[ExternalRoute] = ()) -> Blueprint:
    """``/api/swagger/doc.json``, ``/api/swagger/index.html`` and the UI's assets;
    ``external``: the routes answered below the app (read at each request)."""
    import swagger_ui_bundle

    assets = swagger_ui_bundle.swagger_ui_path
    bp = Blueprint("swagger", __name__)

    @bp.get("/api/swagger/doc.json")
    @doc(summary="The OpenAPI document of this API", tags=["docs"],
         responses={200: {"type": "object"}})
    async def swagger_doc() -> Response:
        response = json_response(build_openapi(current_app, external))
        response.headers["Content-Type"] = "application/json; charset=utf-8"  # Core's, lower case
        return response

    @bp.get("/api/swagger/")
    @bp.get("/api/swagger")
    async def swagger_root() -> Any:
        """Redirect to the Swagger UI."""
        return redirect("/api/swagger/index.html")

    @bp.get("/api/swagger/index.html")
    async def swagger_index() -> Response:
        """Swagger UI."""
        return Response(_INDEX, content_type="text/html; charset=utf-8")

    @bp.get("/api/swagger/swagger-initializer.local.js")
    async def swagger_init() -> Response:
        """Swagger UI start script."""
        return Response(_INIT, content_type="application/javascript")

    @bp.get("/api/swagger/<path:filename>")
    async def swagger_asset(filename: str) -> Response:
        """Swagger UI assets (swagger-ui-bundle)."""
        if filename.endswith(".map") or "/" in filename:
            raise NotFound()
        return await send_from_directory(assets, filename)

    return bp
