"""trio_core.storage.pages: the HLS player page and the npm-installed hls.js library."""

from __future__ import annotations

from importlib import resources

from trio_core.storage.pages import install_hls_pages
from trio_core.web import App


async def test_hls_player_and_library() -> None:
    app = App(__name__)
    install_hls_pages(app)
    client = app.test_client()
    player = await client.get("/hls/cam")
    assert player.status_code == 200 and player.headers["Cache-Control"] == "no-cache"
    static = resources.files("trio_core").joinpath("static")
    assert await player.get_data() == static.joinpath("hls.html").read_bytes()
    library = await client.get("/assets/hls.min.js")
    assert library.status_code == 200, "hls.js missing: reinstall with npm present"
    assert library.headers["Content-Type"] == "text/javascript"
    assert library.headers["Cache-Control"] == "max-age=86400"
    assert await library.get_data() == static.joinpath("hls.min.js").read_bytes()
