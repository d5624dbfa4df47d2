"""The HLS player page ``GET /hls/{process_id}`` and its library ``GET /assets/hls.min.js``.

``trio_core/static/hls.html`` plays a process's HLS output from the storage mounts with hls.js
(copied into ``trio_core/static/`` from npm at install time by ``setup.py``; never fetched
at run time). Without it the page falls back to the browser's native HLS and says so. Files
are read once at install.
"""

from __future__ import annotations

from importlib import resources

from trio_core.http.errors import ApiError
from trio_core.web import App, Response

__all__ = ["install_hls_pages"]


def _static(name: str) -> bytes | None:
    try:
        return resources.files("trio_core").joinpath("static", name).read_bytes()
    except (FileNotFoundError, OSError):
        return None


def install_hls_pages(app: App) -> None:
    page = _static("hls.html") or b""
    library = _static("hls.min.js")
    headers = {"Cache-Control": "no-cache"}

    @app.get("/hls/<process_id>")
    async def hls_player(process_id: str) -> Response:
        return Response(page, content_type="text/html; charset=utf-8", headers=headers)

    @app.get("/assets/hls.min.js")
    async def hls_library() -> Response:
        if library is None:
            raise ApiError(404, "File not found",
                           "hls.js is not installed: install with npm present (see README)")
        return Response(library, content_type="text/javascript",
                        headers={"Cache-Control": "max-age=86400"})
