"""trio_core.http.site_pages: the site's ``/`` and ``/player/<id>`` from trio_core/static."""

from __future__ import annotations

from trio_core.http.site_pages import install_pages, page
from trio_core.web import App


async def test_index_and_player_pages() -> None:
    app = App(__name__)
    install_pages(app)
    client = app.test_client()
    index = await client.get("/")
    player = await client.get("/player/cam")
    for resp, name in ((index, "index.html"), (player, "player.html")):
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert (await resp.get_data(as_text=True)) == page(name)
    assert "<html" in page("player.html").lower()
