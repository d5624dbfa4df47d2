"""Regressions found by driving a real server with datarhei's own clients (Restreamer UI's
``api.js``, core-client-go, core-client-python): each test replays the client's request shape
and asserts what Core v16.16 answers and what the client reads."""

from __future__ import annotations

from pathlib import Path

from .test_api import Api, make_config, running_server


async def test_failed_head_has_no_body_and_no_json_type(tmp_path: Path, ffmpeg: str) -> None:
    """Core answers a failed HEAD with the status alone. The UI's ``_call`` parses any error
    whose Content-Type is JSON (``MemFSHasFile`` polls HEAD /api/v3/fs/mem/<channel>.m3u8
    until the ingest wrote it); a JSON type on an empty body made it throw."""
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        for path in ("/api/v3/fs/mem/ch.m3u8", "/api/v3/fs/disk/ch.html", "/memfs/ch.m3u8",
                     "/api/v3/fs/nofs/x", "/api/v3/process/nope", "/api/v3/nope", "/nope.html"):
            resp = await api.request("HEAD", path)
            assert resp.status_code == 404, (path, resp.status_code)
            assert resp.content == b"", path
            assert "content-type" not in resp.headers, (path, resp.headers)
        # a HEAD that succeeds keeps its type; GET errors keep the JSON body
        resp = await api.request("PUT", "/api/v3/fs/disk/ch.html", content=b"<html>",
                                 headers={"Content-Type": "application/data"})
        assert resp.status_code == 201
        resp = await api.request("HEAD", "/api/v3/fs/disk/ch.html")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
        resp = await api.get("/api/v3/fs/mem/ch.m3u8")
        assert resp.status_code == 404 and resp.headers["content-type"] == "application/json"
        assert resp.json() == {"code": 404, "message": "File not found", "details": ["/ch.m3u8"]}
