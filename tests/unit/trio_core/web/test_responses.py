"""trio_core.web.responses: redirects, and files that stay inside their directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from werkzeug.exceptions import NotFound

from trio_core.web.responses import redirect, send_from_directory


def test_redirect() -> None:
    resp = redirect("/api/swagger/index.html?a=<b>")
    assert resp.status_code == 302 and resp.headers["Location"] == "/api/swagger/index.html?a=<b>"
    assert b"&lt;b&gt;" in resp.data


async def test_send_from_directory(tmp_path: Path) -> None:
    (tmp_path / "app.js").write_text("let a = 1;")
    (tmp_path.parent / "secret.txt").write_text("no")
    resp = await send_from_directory(tmp_path, "app.js")
    assert resp.data == b"let a = 1;" and "javascript" in resp.headers["Content-Type"]
    for name in ("../secret.txt", "missing.js", ""):
        with pytest.raises(NotFound):
            await send_from_directory(tmp_path, name)
