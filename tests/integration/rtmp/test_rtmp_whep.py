"""RTMP ingest to a browser: FFmpeg publishes over RTMP, a process reads ``{rtmp,name=cam}``
and serves WHEP, an aiortc viewer decodes; the publisher leaves and comes back and the same
WebRTC session gets frames again."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api
from tests.helpers.rtmp import play_frames, publisher_argv, rtmp_server, start_ffmpeg, wait_listed
from tests.helpers.whep import wait_live


def rtmp_process(process_id: str) -> dict[str, Any]:
    return {
        "id": process_id,
        "options": ["-loglevel", "level+info"],
        "input": [{"id": "in", "address": "{rtmp,name=cam}", "options": []}],
        "output": [{"id": "null", "address": "-", "options": ["-map", "0:v", "-f", "null"]}],
        "webrtc": {"enabled": True},
        "reconnect": True,
        "reconnect_delay_seconds": 1,
    }


async def viewer_stats(api: Api, process_id: str) -> list[dict[str, Any]]:
    state = (await api.get(f"/api/v3/process/{process_id}/state")).json()
    return (state.get("webrtc") or {}).get("viewers") or []


async def video_packets(api: Api, process_id: str, viewer_id: str) -> int:
    for viewer in await viewer_stats(api, process_id):
        if viewer["id"] == viewer_id:
            return int(viewer["tracks"].get("video", {}).get("packets", 0))
    raise AssertionError(f"viewer {viewer_id} is gone")


@pytest.mark.slow
async def test_rtmp_to_whep_survives_publisher_restart(ffmpeg: str, tmp_path) -> None:
    result: dict[str, Any] = {}
    async with trio.open_nursery() as nursery, rtmp_server(
            tmp_path, ffmpeg, **{"webrtc.enable": True}) as (srv, port):
        api = Api(srv.url)
        url = f"rtmp://127.0.0.1:{port}/cam"
        publisher = await start_ffmpeg(nursery, publisher_argv(ffmpeg, url))
        await wait_listed(api, "/cam")
        resp = await api.post("/api/v3/process", rtmp_process("cam"))
        assert resp.status_code == 200, resp.text
        state = await wait_live(api, "cam", timeout=40)
        assert url in state["command"], state["command"]  # {rtmp,name=cam} resolved as Core does

        async def view() -> None:
            result.update(await run_aiortc_viewer(
                ["--whep", f"{srv.url}/api/v3/process/cam/whep", "--duration", "20",
                 "--video-only"], timeout=90))

        nursery.start_soon(view)
        with trio.fail_after(30):
            while not (viewers := await viewer_stats(api, "cam")) or \
                    viewers[0]["tracks"].get("video", {}).get("packets", 0) < 50:
                await trio.sleep(0.3)
        viewer_id = viewers[0]["id"]
        # a second reader of the same path (besides the process's FFmpeg) decodes too
        rc, frames, err = await play_frames(ffmpeg, url, 2)
        assert rc == 0 and frames >= 40, err[-2000:]

        # the publisher goes away: the stream ends, the process's FFmpeg exits and retries
        publisher.terminate()
        await wait_listed(api, "/cam", present=False)
        await trio.sleep(2.5)
        before = await video_packets(api, "cam", viewer_id)

        # ... and comes back: the same viewer session gets video again
        await start_ffmpeg(nursery, publisher_argv(ffmpeg, url))
        await wait_listed(api, "/cam")
        with trio.fail_after(40):
            while await video_packets(api, "cam", viewer_id) < before + 100:
                await trio.sleep(0.3)
        report = (await api.get("/api/v3/process/cam/report")).json()
        assert report  # the process kept running across the reconnect
        with trio.fail_after(90):
            while not result:
                await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    assert result["error"] is None, result
    assert result["connected"]
    assert result["video_frames"] >= 50, result
    assert (result["width"], result["height"]) == (320, 240)
