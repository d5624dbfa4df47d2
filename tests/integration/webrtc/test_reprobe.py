"""A WebRTC process created before its (video-only) RTMP publisher goes live (issue 22 item 7).

The first probe of ``{rtmp,name=cam}`` cannot answer (nobody publishes yet), so the first
plan is "transcode video and audio with optional maps". With a video-only publisher that plan
makes every FFmpeg run fail ("Output file does not contain any stream"); the hook must probe
the input again before each restart until it answers and then plan a video leg only.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api
from tests.helpers.rtmp import publisher_argv, rtmp_server, start_ffmpeg, wait_listed
from tests.helpers.whep import wait_live


@pytest.mark.slow
async def test_video_only_publisher_after_process_start_goes_live(ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery, rtmp_server(
            tmp_path, ffmpeg, **{"webrtc.enable": True}) as (srv, port):
        api = Api(srv.url)
        process: dict[str, Any] = {
            "id": "cam",
            "options": ["-loglevel", "level+info"],
            "input": [{"id": "in", "address": "{rtmp,name=cam}", "options": []}],
            "output": [{"id": "null", "address": "-", "options": ["-map", "0:v", "-f", "null"]}],
            "webrtc": {"enabled": True},
            "reconnect": True,
            "reconnect_delay_seconds": 1,
        }
        resp = await api.post("/api/v3/process", process)
        assert resp.status_code == 200, resp.text
        await trio.sleep(1.0)  # the process starts (and probes) before anyone publishes
        url = f"rtmp://127.0.0.1:{port}/cam"
        # video only: testsrc2 through libx264, no audio stream at all
        await start_ffmpeg(nursery, publisher_argv(ffmpeg, url, extra=("-an",)))
        await wait_listed(api, "/cam")

        state = await wait_live(api, "cam", timeout=30)
        webrtc = state["webrtc"]
        assert webrtc["input"] is not None, webrtc  # the state shows the probe that answered
        assert webrtc["input"]["audio"] is None and webrtc["input"]["video"]["codec"] == "h264"
        decisions = " | ".join(webrtc["decisions"])
        assert "video only" in decisions, decisions
        assert not any(d.startswith("audio") for d in webrtc["decisions"]), decisions
        assert "input not probed" not in decisions, decisions
        assert list(webrtc["tracks"]) == ["video"], webrtc["tracks"]

        result = await run_aiortc_viewer(
            ["--whep", f"{srv.url}/api/v3/process/cam/whep", "--duration", "2",
             "--video-only"], timeout=30)
        nursery.cancel_scope.cancel()
    assert result["error"] is None, result
    assert result["connected"]
    assert result["video_frames"] >= 10, result
    assert (result["width"], result["height"]) == (320, 240)
