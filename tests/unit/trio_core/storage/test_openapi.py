"""trio_core.storage.openapi: the storage mounts (answered below the app) appear in the OpenAPI
document like views, memfs writes with HTTP Basic auth."""

from __future__ import annotations

from trio_core.http.openapi import build_openapi
from trio_core.storage.openapi import storage_routes
from trio_core.web import App


def test_storage_routes_are_documented() -> None:
    app = App(__name__)
    paths = build_openapi(app, storage_routes())["paths"]
    assert set(paths["/api/v3/fs/{storage}/{filepath}"]) == {"get", "put", "delete"}
    memfs = paths["/memfs/{path}"]
    assert {"get", "put", "post", "delete"} <= set(memfs)
    assert memfs["put"]["security"] == [{"BasicAuth": []}]
    assert "/{path}" in paths and "get" in paths["/{path}"]
