"""Enhanced RTMP passthrough: FFmpeg publishes HEVC, VP9 and AV1 (FourCC video in FLV), the
server recognises codec, sequence start and keyframes, and FFmpeg players decode each."""

from __future__ import annotations

import pytest
import trio

from tests.helpers.rtmp import play_frames, run_ffmpeg
from trio_core.rtmp.server import RtmpServer

ENCODERS = {
    "hevc": ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=25"],
    "vp9": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "25",
            "-b:v", "300k"],
    "av1": ["-c:v", "libsvtav1", "-preset", "12", "-g", "25", "-svtav1-params", "lp=1"],
}


@pytest.fixture
def enhanced_flv(ffmpeg_version: tuple[int, int, int] | None) -> None:
    """Skip unless FFmpeg can publish enhanced RTMP: its FLV muxer writes FourCC video since
    6.1; 5.1's refuses HEVC/VP9/AV1 in FLV ("Could not write header ...: Function not
    implemented"), so no FFmpeg of that version can publish what this test relays."""
    if ffmpeg_version is not None and ffmpeg_version < (6, 1, 0):
        pytest.skip(f"FFmpeg {'.'.join(map(str, ffmpeg_version))} has no enhanced FLV muxer "
                    "(HEVC/VP9/AV1 in FLV need FFmpeg >= 6.1)")


@pytest.mark.slow
async def test_enhanced_rtmp_codecs_pass_through(ffmpeg: str, enhanced_flv: None) -> None:
    server = RtmpServer(host="127.0.0.1", port=0)
    results: dict[str, tuple[int, int, bytes]] = {}
    published: dict[str, tuple[int, bytes]] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        base = f"rtmp://127.0.0.1:{server.ports[0]}/live"

        async def publish(codec: str) -> None:
            published[codec] = await run_ffmpeg([
                ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
                "-i", "testsrc2=size=320x240:rate=25", "-pix_fmt", "yuv420p", *ENCODERS[codec],
                "-t", "10", "-f", "flv", f"{base}/{codec}"])

        async def play(codec: str) -> None:
            with trio.fail_after(30):
                while f"/live/{codec}" not in server.channels():
                    await trio.sleep(0.1)
            channel = server.registry.get(f"/live/{codec}")
            assert channel is not None
            with trio.fail_after(30):  # wait for the first keyframe
                while not channel.gop:
                    await trio.sleep(0.1)
            assert channel.video_codec == codec
            assert channel.video_config is not None  # the FourCC sequence start was kept
            results[codec] = await play_frames(ffmpeg, f"{base}/{codec}", 2)

        async with trio.open_nursery() as clients:
            for codec in ENCODERS:
                clients.start_soon(publish, codec)
                clients.start_soon(play, codec)
        nursery.cancel_scope.cancel()
    for codec, (rc, frames, err) in results.items():
        assert rc == 0 and frames >= 40, (codec, err[-2000:])
        assert f"Video: {codec}".encode() in err, (codec, err[-2000:])
    assert set(results) == set(ENCODERS)
    for codec, (rc, err) in published.items():
        assert rc == 0, (codec, err[-2000:])
