"""The Restreamer UI's memfs channel flow, replayed against a base URL: a single node or a
load balancer in front of a cluster (``channel_flow``).

Ingest HLS into memfs, the snapshot process reading ``{memfs}/<channel>.m3u8``, the player
reading that HLS over HTTP, the ingest probe through ``#id:output=``, an RTMP egress (FFmpeg
listening) reading the memfs playlist, metadata, the player files on the disk fs, then
deleting the channel leaves memfs empty. Cancellation: the RTMP listener runs in the caller's
``nursery`` and is cancelled with it."""

from __future__ import annotations

import socket
import uuid
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import trio

from tests.helpers.api import Api, wait_for

__all__ = ["channel_flow", "ui_ingest"]


def _free_tcp_port() -> int:
    """A port for an FFmpeg RTMP listener (it cannot bind port 0 and report it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ui_ingest(channelid: str) -> dict[str, Any]:
    """The UI's ingest (src/utils/restreamer.js UpsertIngest): HLS v3 into {memfs}, no master
    playlist, its cleanup rules; segment 1 s / list 4 instead of 2 s / 6 to keep tests short."""
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


async def channel_flow(api: Api, anon: Api, ffmpeg: str, tmp_path: Path,
                       nursery: trio.Nursery, *, timeout: float = 60) -> dict[str, str]:
    """Run the UI's channel flow through ``api`` (authorized) and ``anon`` (no token), both
    on the same base URL. Returns the ids of the channel's processes by role (``ingest``,
    ``snapshot``, ``egress``), all deleted again when it returns."""
    channelid = str(uuid.uuid4())
    ingest = ui_ingest(channelid)
    pid = ingest["id"]
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

    await wait_for(lambda: has(f"{channelid}.m3u8"), timeout=timeout)
    await wait_for(lambda: has(f"{channelid}.jpg"), timeout=timeout)
    jpg = await anon.get(f"/memfs/{channelid}.jpg")  # public, as the UI's poster <img>
    assert jpg.headers["content-type"] == "image/jpeg" and jpg.content[:2] == b"\xff\xd8"

    # the player's HLS plays: FFmpeg reads the playlist over HTTP
    played = await trio.run_process(
        [ffmpeg, "-hide_banner", "-nostats", "-i", f"{anon.base}/memfs/{channelid}.m3u8",
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
        ("audio", "aac"), ("video", "h264")], probe
    assert (await api.delete(f"/api/v3/process/{q(probe_id)}")).json() == "OK"

    # egress to an RTMP server (FFmpeg listening), input the memfs playlist as the UI sets it
    port = _free_tcp_port()
    received = tmp_path / f"received-{channelid}.flv"
    nursery.start_soon(partial(
        trio.run_process, [ffmpeg, "-hide_banner", "-loglevel", "error", "-listen", "1",
                           "-f", "flv", "-i", f"rtmp://127.0.0.1:{port}/live/x",
                           "-c", "copy", "-flush_packets", "1", "-max_interleave_delta", "500000",
                           "-f", "flv", "-y", str(received)], check=False))
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
    assert (await api.get(f"/api/v3/process/{q(egress_id)}/metadata/restreamer-ui")).json() == meta

    async def receiving() -> bool:
        return received.exists() and received.stat().st_size > 30_000

    try:
        await wait_for(receiving, timeout=timeout)
    except trio.TooSlowError:
        report = (await api.get(f"/api/v3/process/{q(egress_id)}?filter=state,report")).json()
        raise AssertionError(f"the RTMP egress delivered nothing: {report}") from None
    state = (await api.get(f"/api/v3/process/{q(egress_id)}/state")).json()
    assert state["exec"] == "running" and state["progress"]["outputs"], state

    # player files the UI PUTs to the disk fs, then served from the disk mount
    player = f"/channels/{channelid}/config.js"
    resp = await api.request("PUT", f"/api/v3/fs/disk{player}", content=b"var playerConfig = {}",
                             headers={"Content-Type": "application/data"})
    assert resp.status_code == 201
    names = [f["name"] for f in (await api.get("/api/v3/fs/disk?glob=/channels/*/*")).json()]
    assert names == [player], names
    assert (await anon.get(player)).content == b"var playerConfig = {}"

    # delete the channel as the UI does: every memfs file of it is purged
    for process_id in (egress_id, pid + "_snapshot", pid):
        assert (await api.delete(f"/api/v3/process/{q(process_id)}")).json() == "OK"

    async def purged() -> bool:
        return (await api.get(f"/api/v3/fs/mem?glob=/{channelid}*")).json() == []

    await wait_for(purged, timeout=10)
    return {"ingest": pid, "snapshot": pid + "_snapshot", "egress": egress_id}
