"""The browser pages: ``GET /`` (process list) and ``GET /player/{id}`` (WHEP player).

Plain HTML + JavaScript files from ``trio_core/static`` (no build step). The pages need no
credentials themselves; their API calls carry ``?token=`` as a bearer token when given.
"""

from __future__ import annotations

from importlib import resources

from trio_core.web import App, Response

__all__ = ["install_pages", "page"]


def page(name: str) -> str:
    """The text of ``trio_core/static/<name>``."""
    return resources.files("trio_core").joinpath("static", name).read_text(encoding="utf-8")


def install_pages(app: App) -> None:
    """Register ``/`` and ``/player/<process_id>`` on ``app`` (files read once)."""
    index_html = page("index.html")
    player_html = page("player.html")
    headers = {"Cache-Control": "no-cache"}

    @app.get("/")
    async def index() -> Response:
        return Response(index_html, content_type="text/html; charset=utf-8", headers=headers)

    @app.get("/player/<process_id>")
    async def player(process_id: str) -> Response:
        return Response(player_html, content_type="text/html; charset=utf-8", headers=headers)
