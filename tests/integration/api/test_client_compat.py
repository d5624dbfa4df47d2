"""Regressions found by driving a real server with datarhei's own clients (Restreamer UI's
``api.js``, core-client-go, core-client-python): each test replays the client's request shape
and asserts what Core v16.16 answers and what the client reads."""

from __future__ import annotations

import socket
import uuid
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio

from tests.helpers.api import Api, make_config, running_server, wait_for


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
            ("PUT", "/api/v3/process", 405), ("PUT", "/api/v3/nothing", 404),
            ("POST", "/api/v3/process/x", 405)}


def _free_tcp_port() -> int:
    """A port for an FFmpeg RTMP listener (it cannot bind port 0 and report it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ui_ingest(channelid: str) -> dict[str, Any]:
    """The UI's ingest (src/utils/restreamer.js UpsertIngest): HLS v3 into {memfs}, no master
    playlist, its cleanup rules; segment 1 s / list 4 instead of 2 s / 6 to keep the test short."""
    pid = f"restreamer-ui:ingest:{channelid}"
    return {
        "type": "ffmpeg", "id": pid, "reference": channelid,
        "input": [{"id": "input_0", "address": "testsrc=size=160x120:rate=10",
                   "options": ["-f", "lavfi", "-re"]},
                  {"id": "input_1", "address": "anullsrc=r=44100:cl=stereo",
                   "options": ["-f", "lavfi"]}],
        "output": [{
            "id": "output_0", "address": f"{{memfs}}/{channelid}.m3u8",
            "options": ["-dn", "-sn", "-map", "0:v", "-map", "1:a", "-codec:v", "libx264",
                        "-preset:v", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p", "-threads", "1",
                        "-codec:a", "aac", "-b:a", "64k",
                        "-metadata", "service_provider=datarhei-Restreamer",
                        "-f", "hls", "-start_number", "0", "-hls_time", "1", "-hls_list_size", "4",
                        "-hls_flags", "append_list+delete_segments+program_date_time+temp_file",
                        "-hls_delete_threshold", "4",
                        "-hls_segment_filename", f"{{memfs}}/{channelid}_%04d.ts", "-method", "PUT"],
            "cleanup": [
                {"pattern": f"memfs:/{channelid}**", "purge_on_delete": True},
                {"pattern": f"memfs:/{channelid}.m3u8", "max_file_age_seconds": 10,
                 "purge_on_delete": True},
                {"pattern": f"memfs:/{channelid}_**.ts", "max_files": 10,
                 "max_file_age_seconds": 10, "purge_on_delete": True},
            ]}],
        "options": ["-loglevel", "level+info", "-err_detect", "ignore_err", "-y"],
        "autostart": True, "reconnect": True, "reconnect_delay_seconds": 15,
        "stale_timeout_seconds": 30,
        "limits": {"cpu_usage": 0, "memory_mbytes": 0, "waitfor_seconds": 5},
    }


@pytest.mark.slow
async def test_restreamer_ui_memfs_channel_snapshot_probe_egress(tmp_path: Path,
                                                                  ffmpeg: str) -> None:
    """The UI's whole memfs channel with API auth on: ingest HLS into memfs, the snapshot
    process and an RTMP egress both reading that playlist, the ingest probe through
    ``#id:output=``, the player files on the disk fs, then the channel deleted leaves memfs empty."""
    channelid = str(uuid.uuid4())
    ingest = _ui_ingest(channelid)
    pid = ingest["id"]
    config = make_config(tmp_path, ffmpeg, **{
        "api.auth.enable": True, "api.auth.username": "admin", "api.auth.password": "pw",
        "api.auth.disable_localhost": False})
    async with running_server(config) as srv, trio.open_nursery() as nursery:
        anon = Api(srv.url)
        assert (await anon.get("/api")).json()["auths"] == ["localjwt"]
        tokens = (await anon.post("/api/login", {"username": "admin", "password": "pw"})).json()
        api = Api(srv.url, tokens["access_token"])
        q = partial(quote, safe="")

        assert (await api.put(f"/api/v3/process/{q(pid)}", ingest)).status_code == 404
        assert (await api.post("/api/v3/process", ingest)).status_code == 200
        snapshot = {
            "type": "ffmpeg", "id": pid + "_snapshot", "reference": channelid,
            "input": [{"id": "input_0", "address": f"{{memfs}}/{channelid}.m3u8", "options": []}],
            "output": [{"id": "output_0", "address": f"{{memfs}}/{channelid}.jpg",
                        "options": ["-vframes", "1", "-f", "image2", "-update", "1"],
                        "cleanup": [{"pattern": f"memfs:/{channelid}.jpg",
                                     "purge_on_delete": True}]}],
            "options": ["-err_detect", "ignore_err"], "autostart": True, "reconnect": True,
            "reconnect_delay_seconds": 1, "stale_timeout_seconds": 30}
        assert (await api.post("/api/v3/process", snapshot)).status_code == 200

        # HasIngestFiles: HEAD until the playlist exists (404s with no body meanwhile)
        async def has(path: str) -> bool:
            return (await api.request("HEAD", f"/api/v3/fs/mem/{path}")).status_code == 200

        await wait_for(lambda: has(f"{channelid}.m3u8"), timeout=60)
        await wait_for(lambda: has(f"{channelid}.jpg"), timeout=60)
        jpg = await api.get(f"/memfs/{channelid}.jpg")  # public, as the UI's poster <img>
        assert jpg.headers["content-type"] == "image/jpeg" and jpg.content[:2] == b"\xff\xd8"

        # the player's HLS plays: FFmpeg reads the playlist over HTTP
        played = await trio.run_process(
            [ffmpeg, "-hide_banner", "-nostats", "-i", f"{srv.url}/memfs/{channelid}.m3u8",
             "-t", "2", "-f", "null", "-"], capture_stdout=True, capture_stderr=True, check=False)
        assert played.returncode == 0, played.stderr[-1000:]
        assert b"Video: h264" in played.stderr and b"Audio: aac" in played.stderr

        # ProbeIngest
        probe_id = pid + "_probe"
        assert (await api.post("/api/v3/process", {
            "type": "ffmpeg", "id": probe_id, "reference": channelid,
            "input": [{"id": "input_0", "address": f"#{pid}:output=output_0", "options": []}],
            "output": [{"id": "output_0", "address": "-",
                        "options": ["-dn", "-sn", "-codec", "copy", "-f", "null"]}],
            "options": [], "autostart": False, "reconnect": False})).status_code == 200
        probe = (await api.get(f"/api/v3/process/{q(probe_id)}/probe")).json()
        assert sorted((s["type"], s["codec"]) for s in probe["streams"]) == [
            ("audio", "aac"), ("video", "h264")], probe["log"]
        assert (await api.delete(f"/api/v3/process/{q(probe_id)}")).json() == "OK"

        # egress to an RTMP server (FFmpeg listening), input the memfs playlist as the UI sets it
        port = _free_tcp_port()
        received = tmp_path / "received.flv"
        nursery.start_soon(partial(
            trio.run_process, [ffmpeg, "-hide_banner", "-loglevel", "error", "-listen", "1",
                               "-f", "flv", "-i", f"rtmp://127.0.0.1:{port}/live/x",
                               "-c", "copy", "-f", "flv", "-y", str(received)], check=False))
        egress_id = f"restreamer-ui:egress:rtmp:{uuid.uuid4()}"
        egress = {
            "type": "ffmpeg", "id": egress_id, "reference": channelid,
            "input": [{"id": "input_0", "address": f"{{memfs}}/{channelid}.m3u8",
                       "options": ["-re"]}],
            "output": [{"id": "output_0", "address": f"rtmp://127.0.0.1:{port}/live/x",
                        "options": ["-map", "0:v", "-map", "0:a", "-codec", "copy", "-f", "flv"]}],
            "options": ["-loglevel", "level+info", "-err_detect", "ignore_err"],
            "autostart": True, "reconnect": True, "reconnect_delay_seconds": 1,
            "stale_timeout_seconds": 30}
        assert (await api.post("/api/v3/process", egress)).status_code == 200
        meta = {"name": "rtmp out", "control": {"source": {"source": "hls+memfs"}}}
        resp = await api.put(f"/api/v3/process/{q(egress_id)}/metadata/restreamer-ui", meta)
        assert resp.status_code == 200 and resp.json() == meta

        async def receiving() -> bool:
            return received.exists() and received.stat().st_size > 30_000

        await wait_for(receiving, timeout=60)
        state = (await api.get(f"/api/v3/process/{q(egress_id)}/state")).json()
        assert state["exec"] == "running" and state["progress"]["outputs"]

        # player files the UI PUTs to the disk fs, then served from the disk mount
        player = f"/channels/{channelid}/config.js"
        resp = await api.request("PUT", f"/api/v3/fs/disk{player}", content=b"var playerConfig = {}",
                                 headers={"Content-Type": "application/data"})
        assert resp.status_code == 201
        names = [f["name"] for f in (await api.get("/api/v3/fs/disk?glob=/channels/*/*")).json()]
        assert names == [player]
        assert (await anon.get(player)).content == b"var playerConfig = {}"

        # delete the channel as the UI does: every memfs file of it is purged
        for process_id in (egress_id, pid + "_snapshot", pid):
            assert (await api.delete(f"/api/v3/process/{q(process_id)}")).json() == "OK"

        async def purged() -> bool:
            return (await api.get(f"/api/v3/fs/mem?glob=/{channelid}*")).json() == []

        await wait_for(purged, timeout=10)
        nursery.cancel_scope.cancel()
