"""Regressions found by driving a real server with datarhei's own clients (Restreamer UI's
``api.js``, core-client-go, core-client-python): each test replays the client's request shape
and asserts what Core v16.16 answers and what the client reads."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from tests.helpers.api import Api, make_config, running_server
from tests.helpers.restreamer_ui import channel_flow


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
        assert resp.status_code == 404
        assert resp.headers["content-type"] == "application/json; charset=UTF-8"  # as Core
        assert resp.json() == {"code": 404, "message": "File not found", "details": ["/ch.m3u8"]}


async def test_refused_bodies_keep_the_connection_usable(tmp_path: Path, ffmpeg: str) -> None:
    """A request answered without its body being read (unknown route, wrong method, a GET with
    a body) must still be answered on a keep-alive connection, and the next request on it too.
    Found fuzzing with one httpx connection: about 1 in 10 such answers never came."""
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:

        def run() -> list[tuple[str, str, int]]:
            answers = []
            with httpx.Client(base_url=srv.url, timeout=10) as client:
                for i in range(40):
                    for method, path in (("PUT", "/api/v3/process"), ("PUT", "/api/v3/nothing"),
                                         ("POST", f"/api/v3/process/x{i}")):
                        resp = client.request(method, path, content=b'{"id":"x"}' * (i + 1),
                                              headers={"Content-Type": "application/json"})
                        answers.append((method, path, resp.status_code))
                    # a body on a GET the handler never reads (httpx sends it as given)
                    resp = client.request("GET", "/api", content=b"[]" * (i + 1))
                    assert resp.status_code == 200 and resp.json()["app"] == "datarhei-core"
            return answers

        answers = await trio.to_thread.run_sync(run)
        assert len(answers) == 120
        assert {(m, p.rstrip("0123456789"), s) for m, p, s in answers} == {
            ("PUT", "/api/v3/process", 404), ("PUT", "/api/v3/nothing", 404),
            ("POST", "/api/v3/process/x", 404)}


@pytest.mark.slow
async def test_restreamer_ui_memfs_channel_snapshot_probe_egress(tmp_path: Path,
                                                                  ffmpeg: str) -> None:
    """The UI's whole memfs channel with API auth on (``tests/helpers/restreamer_ui.py``):
    ingest HLS into memfs, the snapshot process and an RTMP egress both reading that playlist,
    the ingest probe through ``#id:output=``, the player files on the disk fs, then the channel
    deleted leaves memfs empty."""
    config = make_config(tmp_path, ffmpeg, **{
        "api.auth.enable": True, "api.auth.username": "admin", "api.auth.password": "pw",
        "api.auth.disable_localhost": False})
    async with running_server(config) as srv, trio.open_nursery() as nursery:
        anon = Api(srv.url)
        assert (await anon.get("/api")).json()["auths"] == ["localjwt"]
        tokens = (await anon.post("/api/login", {"username": "admin", "password": "pw"})).json()
        api = Api(srv.url, tokens["access_token"])
        await channel_flow(api, anon, ffmpeg, tmp_path, nursery)
        nursery.cancel_scope.cancel()

