"""WHIP ingest with FFmpeg's ``-f whip`` muxer (an independent WHIP client) as publisher and
aiortc (an independent WebRTC stack) as WHEP viewer of the channel."""

from __future__ import annotations

import pytest

from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api
from tests.helpers.whip import (
    FPS,
    ffmpeg_publisher,
    ffmpeg_whip_argv,
    wait_published,
    whip_server,
)

TOKEN = "s3cret-whip"


@pytest.mark.slow
@pytest.mark.parametrize("dtls_active", [False, True], ids=["ffmpeg-passive", "ffmpeg-active"])
async def test_ffmpeg_publishes_and_aiortc_plays(ffmpeg: str, tmp_path, dtls_active: bool
                                                 ) -> None:
    async with whip_server(tmp_path, ffmpeg, **{"whip.token": TOKEN}) as srv:
        api = Api(srv.url)
        argv = ffmpeg_whip_argv(ffmpeg, f"{srv.url}/whip/cam", token=TOKEN,
                                dtls_active=dtls_active)
        async with ffmpeg_publisher(argv) as proc:
            entry = await wait_published(api, "cam", packets=50)
            assert entry["dtls_role"] == ("server" if dtls_active else "client")
            assert entry["codecs"] == {"video": "H264/90000", "audio": "opus/48000/2"}
            assert entry["remote_address"].startswith("127.0.0.1:")
            duration = 4.0
            result = await run_aiortc_viewer(
                ["--whep", f"{srv.url}/whep/cam", "--duration", str(duration)], timeout=60)
            assert result["error"] is None, (result, bytes(proc.stderr_tail)[-2000:])
            assert result["connected"]
            assert result["video_frames"] >= 0.9 * FPS * duration, result
            assert (result["width"], result["height"]) == (320, 240)
            assert result["audio_samples"] >= 48000, result
            assert result["first_frame_ms"] is not None and result["first_frame_ms"] < 1500
            assert result["delete_status"] == 204
            entry = await wait_published(api, "cam")
            assert entry["bitrate_kbit"] > 100, entry
