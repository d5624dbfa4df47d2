"""The direct routes (the HTTP server answers the hot requests before the app): the same
status, headers and bytes as the app's answer to the same request, the same HLS session
accounting, the same auth decisions (the app's answer is reached with a percent-encoded
target, which the direct routes always pass on)."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import trio

from tests.helpers.api import Api, make_config, running_server
from trio_core.observability.hls_sessions import SESSION_ID

MEMFS_AUTH = ("writer", "secret")
BASIC = "Basic " + base64.b64encode(":".join(MEMFS_AUTH).encode()).decode()


def same_answer(direct: httpx.Response, via_app: httpx.Response) -> None:
    assert direct.status_code == via_app.status_code
    assert direct.content == via_app.content
    strip = {"date"}
    assert ({k: v for k, v in direct.headers.items() if k not in strip}
            == {k: v for k, v in via_app.headers.items() if k not in strip})


async def test_memfs_files_and_segment_sessions(ffmpeg: str, tmp_path: Path) -> None:
    config = make_config(tmp_path, ffmpeg, **{
        "storage.memory.auth.enable": True,
        "storage.memory.auth.username": MEMFS_AUTH[0],
        "storage.memory.auth.password": MEMFS_AUTH[1],
        "storage.cors.origins": ["https://ui.example"],
        "sessions.enable": True, "sessions.ip_ignorelist": []})
    async with running_server(config) as running:
        api = Api(running.url)
        segment = bytes(range(256)) * 1000
        put = await api.request("PUT", "/memfs/live/seg1.ts", content=segment,
                                headers={"Authorization": BASIC})
        assert put.status_code == 201
        await api.request("PUT", "/memfs/live/index.m3u8", headers={"Authorization": BASIC},
                          content=b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nseg1.ts\n")
        for headers in ({}, {"Origin": "https://ui.example"}, {"Origin": "https://other"}):
            direct = await api.get("/memfs/live/seg1.ts", headers=headers)
            via_app = await api.get("/memfs/live/seg1%2Ets", headers=headers)
            same_answer(direct, via_app)
            assert direct.content == segment
        head = await api.request("HEAD", "/memfs/live/seg1.ts")
        same_answer(head, await api.request("HEAD", "/memfs/live/seg1%2Ets"))
        assert head.headers["content-length"] == str(len(segment)) and head.content == b""
        # a Range and a missing file go to the app (206 / 404 as before)
        part = await api.get("/memfs/live/seg1.ts", headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content == segment[:10]
        assert (await api.get("/memfs/live/nope.ts")).status_code == 404
        # sessions: the playlist (the app's middleware) hands out a session id, the segment
        # fetched directly counts its bytes and activates the session
        master = await api.get("/memfs/live/index.m3u8")
        sid = master.text.strip().splitlines()[-1].split("session=")[1]
        assert SESSION_ID.match(sid)
        media = await api.get(f"/memfs/live/index.m3u8?session={sid}")
        assert f"seg1.ts?session={sid}" in media.text
        active = (await api.get("/api/v3/session/active?collectors=hls")).json()
        assert active["hls"] == []  # pending until a segment is requested
        seg = await api.get(f"/memfs/live/seg1.ts?session={sid}")
        assert seg.content == segment
        active = (await api.get("/api/v3/session/active?collectors=hls")).json()
        assert [s["id"] for s in active["hls"]] == [sid]
        assert active["hls"][0]["bytes_tx"] > len(segment)


async def test_state_route_same_bytes_and_auth(ffmpeg: str, tmp_path: Path) -> None:
    config = make_config(tmp_path, ffmpeg, **{
        "api.auth.enable": True, "api.auth.username": "admin", "api.auth.password": "pw"})
    async with running_server(config) as running:
        login = await Api(running.url).request(
            "POST", "/api/login", json_body={"username": "admin", "password": "pw"})
        api = Api(running.url, token=login.json()["access_token"])
        process = {"id": "p1", "reference": "r",
                   "input": [{"id": "in", "address": "testsrc", "options": ["-f", "lavfi"]}],
                   "output": [{"id": "out", "address": "-", "options": ["-f", "null"]}],
                   "autostart": False}
        assert (await api.request("POST", "/api/v3/process", json_body=process)).status_code == 200
        direct = await api.get("/api/v3/process/p1/state")
        same_answer(direct, await api.get("/api/v3/process/p%31/state"))
        assert direct.json()["order"] == "stop"
        # no token, a bad token: the app's 401
        anonymous = Api(running.url)
        refused = await anonymous.get("/api/v3/process/p1/state")
        assert refused.status_code == 401
        same_answer(refused, await anonymous.get("/api/v3/process/p%31/state"))
        bad = Api(running.url, token="x.y.z")
        assert (await bad.get("/api/v3/process/p1/state")).status_code == 401
        # unknown process: the app's 404
        assert (await api.get("/api/v3/process/nope/state")).status_code == 404
        # the list: same bytes as the app's route for the same arguments (the app parses
        # an escaped query), with and without filters; the app's 401 without a token
        second = {**process, "id": "p2", "reference": "other"}
        assert (await api.request("POST", "/api/v3/process", json_body=second)).status_code == 200
        for direct_query, app_query in (("", "?x=%31"), ("?filter=state,config", "?filter=%73tate,config"),
                                        ("?reference=other", "?reference=%6Fther"),
                                        ("?id=p1,p9&filter=metadata", "?id=p%31,p9&filter=metadata"),
                                        ("?idpattern=p*&refpattern=r", "?idpattern=p%2A&refpattern=r"),
                                        ("?idpattern=[", "?idpattern=%5B")):
            direct = await api.get("/api/v3/process" + direct_query)
            same_answer(direct, await api.get("/api/v3/process" + app_query))
            assert direct.status_code == 200
        listed = (await api.get("/api/v3/process?reference=other")).json()
        assert [p["id"] for p in listed] == ["p2"]
        assert (await api.get("/api/v3/process?idpattern=[")).json() == []
        refused = await anonymous.get("/api/v3/process")
        assert refused.status_code == 401
        same_answer(refused, await anonymous.get("/api/v3/process?x=%31"))


async def test_public_memfs_put_gets_401_before_100_continue(ffmpeg: str, tmp_path: Path
                                                             ) -> None:
    """As Core's Go server: an upload that waits for ``100 Continue`` gets the 401 challenge
    first (so an FFmpeg outside trio-core retries with its credentials), and ``100 Continue``
    once the credentials pass."""
    config = make_config(tmp_path, ffmpeg, **{
        "storage.memory.auth.enable": True,
        "storage.memory.auth.username": MEMFS_AUTH[0],
        "storage.memory.auth.password": MEMFS_AUTH[1]})
    async with running_server(config) as running:
        stream = await trio.open_tcp_stream("127.0.0.1", running.port)
        async with stream:
            await stream.send_all(b"PUT /memfs/up.ts HTTP/1.1\r\nHost: x\r\n"
                                  b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n")
            with trio.fail_after(5):
                got = await stream.receive_some(4096)
            assert got.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
            assert b"www-authenticate: basic realm=Restricted" in got
        stream = await trio.open_tcp_stream("127.0.0.1", running.port)
        async with stream:
            await stream.send_all(b"PUT /memfs/up.ts HTTP/1.1\r\nHost: x\r\nAuthorization: "
                                  + BASIC.encode() + b"\r\nExpect: 100-continue\r\n"
                                  b"Content-Length: 3\r\n\r\n")
            with trio.fail_after(5):
                got = await stream.receive_some(4096)
            assert got == b"HTTP/1.1 100 Continue\r\n\r\n"
            await stream.send_all(b"abc")
            with trio.fail_after(5):
                got = await stream.receive_some(4096)
            assert got.startswith(b"HTTP/1.1 201 Created\r\n")
        assert (await Api(running.url).get("/memfs/up.ts")).content == b"abc"
