"""OpenAPI descriptions of the routes :class:`~.mounts.StorageHTTP` answers below the API
app (they are not in ``app.url_map``, so the generator would not see them): the file API
``/api/v3/fs/{storage}/{filepath}`` (Core's ``filesystem-3-*-file`` operations), the memfs
mount ``/memfs/{path}`` and the disk mount ``/{path}``."""

from __future__ import annotations

from typing import Any

from trio_core.http.openapi import ExternalRoute

__all__ = ["storage_routes"]

_FILE = {"type": "string", "format": "binary"}
_TEXT = {"type": "string"}
_STORAGE = {"name": "storage", "in": "path", "required": True, "description":
            "Name of the filesystem (mem, disk)", "schema": {"type": "string"}}


def storage_routes() -> list[ExternalRoute]:
    """The storage mounts' routes, for the OpenAPI document."""
    tags = ["v16.7.2"]
    api_rule = "/api/v3/fs/<storage>/<path:filepath>"
    routes: list[ExternalRoute] = [
        ExternalRoute(api_rule, ("GET",), "storage_fs.get_file", {
            "summary": "Fetch a file from a filesystem", "tags": tags,
            "parameters": [_STORAGE], "produces": "application/data",
            "responses": {200: _FILE, 206: _FILE, 400: None, 404: None, 416: None}}),
        ExternalRoute(api_rule, ("PUT",), "storage_fs.put_file", {
            "summary": "Add a file to a filesystem", "tags": tags,
            "parameters": [_STORAGE], "request": _FILE, "request_type": "application/data",
            "produces": "text/plain", "responses": {201: _TEXT, 204: None, 400: None}}),
        ExternalRoute(api_rule, ("DELETE",), "storage_fs.delete_file", {
            "summary": "Remove a file from a filesystem", "tags": tags,
            "parameters": [_STORAGE], "produces": "text/plain",
            "responses": {200: _TEXT, 404: None}}),
    ]
    memfs: dict[str, Any] = {"tags": ["storage"], "secured_methods": ("PUT", "POST", "DELETE")}
    hls = ("HLS playlists and segments of clients outside sessions.ip_ignorelist are "
           "session-accounted as Core does (playlists rewritten with ?session=, 403 for a "
           "malformed session id, 509 when a session limit is reached).")
    routes += [
        ExternalRoute("/memfs/<path:path>", ("GET",), "storage_mounts.memfs_get", {
            **memfs, "summary": "Fetch a file from memfs", "description": hls,
            "produces": "application/data",
            "responses": {200: _FILE, 206: _FILE, 403: None, 404: None, 416: None,
                          509: None}}, security_scheme="BasicAuth"),
        ExternalRoute("/memfs/<path:path>", ("PUT", "POST"), "storage_mounts.memfs_put", {
            **memfs, "summary": "Write a file to memfs (HTTP Basic auth)",
            "request": _FILE, "request_type": "application/data", "produces": "text/plain",
            "responses": {201: _TEXT, 204: None, 400: None}}, security_scheme="BasicAuth"),
        ExternalRoute("/memfs/<path:path>", ("DELETE",), "storage_mounts.memfs_delete", {
            **memfs, "summary": "Remove a file from memfs (HTTP Basic auth)",
            "produces": "text/plain", "responses": {200: _TEXT, 404: None}},
            security_scheme="BasicAuth"),
        ExternalRoute("/<path:path>", ("GET",), "storage_mounts.disk_get", {
            "tags": ["storage"], "summary": "Fetch a file from the disk (storage.disk.dir)",
            "description": "Paths of the app's own pages win. " + hls,
            "produces": "application/data", "security": False,
            "responses": {200: _FILE, 206: _FILE, 403: None, 404: None, 416: None,
                          509: None}}),
    ]
    return routes
