"""FFmpeg → Source → Peer ← aiortc, which decodes: frame and sample counts, not "connected".

All sockets are on 127.0.0.1. aiortc runs in a subprocess (``tests/helpers/aiortc_viewer.py``).
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from rtp.forwarder import Forwarder
from rtp.source import Source
from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.producer import (
    lavfi_to_rtp,
    make_mp4_aac,
    mp4_copy_to_rtp,
    start_producer,
    wait_for_file,
)


@asynccontextmanager
async def forwarding(ffmpeg: str, tmp_path: Path, argv_for: object
                     ) -> AsyncIterator[tuple[Forwarder, Source, trio.Nursery, trio.Process]]:
    async with trio.open_nursery() as nursery:
        fwd = Forwarder()
        await nursery.start(fwd.run)
        source: Source = await nursery.start(fwd.open_source, "cam", ("video", "audio"))
        sdp = tmp_path / "cam.sdp"
        producer = await start_producer(nursery, argv_for(source.ports, sdp))  # type: ignore[operator]
        source.set_sdp(await wait_for_file(sdp))
        yield fwd, source, nursery, producer
        nursery.cancel_scope.cancel()


def answerer(fwd: Forwarder):  # noqa: ANN201
    async def answer(offer: str) -> str:
        _, ans = await fwd.add_peer("cam", offer)
        return ans.sdp
    return answer


@pytest.mark.slow
async def test_aiortc_decodes_h264_and_opus_from_ffmpeg(ffmpeg: str, tmp_path: Path) -> None:
    async with forwarding(ffmpeg, tmp_path,
                          lambda ports, sdp: lavfi_to_rtp(ffmpeg, ports, sdp)) as (fwd, src, _, _p):
        result = await run_aiortc_viewer(["--duration", "4"], answerer(fwd))
        assert result["error"] is None, result
        assert result["video_frames"] >= 60, result  # 25 fps for 4 s
        assert (result["width"], result["height"]) == (320, 240)
        assert result["audio_samples"] >= 2 * 48000, result  # ≥ 2 s of decoded Opus
        peer_stats = [p.stats() for p in src.peers.values()]
        assert peer_stats == [] or all(s["packets_sent"] > 0 for s in peer_stats)


@pytest.mark.slow
async def test_aiortc_decodes_an_mp4_copy_leg_with_aac_transcoded(ffmpeg: str,
                                                                  tmp_path: Path) -> None:
    mp4 = make_mp4_aac(ffmpeg, tmp_path / "in.mp4")
    async with forwarding(ffmpeg, tmp_path,
                          lambda ports, sdp: mp4_copy_to_rtp(ffmpeg, mp4, ports, sdp)
                          ) as (fwd, src, _, _p):
        assert src.tracks["video"].codec.name.upper() == "H264"
        assert src.tracks["audio"].codec.name.lower() == "opus"
        result = await run_aiortc_viewer(["--duration", "4"], answerer(fwd))
        assert result["error"] is None, result
        assert result["video_frames"] >= 60, result
        assert result["audio_samples"] >= 2 * 48000, result


@pytest.mark.slow
async def test_viewer_keeps_decoding_across_a_producer_restart(ffmpeg: str,
                                                               tmp_path: Path) -> None:
    async with forwarding(ffmpeg, tmp_path,
                          lambda ports, sdp: lavfi_to_rtp(ffmpeg, ports, sdp)
                          ) as (fwd, src, nursery, producer):
        sdp = tmp_path / "cam.sdp"

        async def restart_midway() -> None:
            await trio.sleep(3.0)
            producer.send_signal(signal.SIGKILL)  # the producer dies mid-stream...
            await producer.wait()
            await trio.sleep(0.5)
            await start_producer(nursery, lavfi_to_rtp(ffmpeg, src.ports, sdp))  # ...and returns

        nursery.start_soon(restart_midway)
        result = await run_aiortc_viewer(["--duration", "8"], answerer(fwd))
        assert result["error"] is None, result
        # 8 s at 25 fps, minus the ~0.5 s gap: far more than the first 3 s could give
        assert result["video_frames"] >= 150, result
        assert result["audio_samples"] >= 5 * 48000, result
        assert src.state["video"].restarts == 1


@pytest.mark.slow
async def test_a_viewer_joining_mid_gop_decodes_at_once(ffmpeg: str, tmp_path: Path) -> None:
    # a 20 s GOP: without the GOP cache no keyframe would arrive during the viewer's 4 s
    async with forwarding(ffmpeg, tmp_path,
                          lambda ports, sdp: lavfi_to_rtp(ffmpeg, ports, sdp, gop=500)
                          ) as (fwd, src, _, _p):
        await trio.sleep(3.0)  # join 3 s after the only keyframe
        assert src.state["video"].keyframes == 1
        assert len(src.state["video"].gop) > 50
        result = await run_aiortc_viewer(["--duration", "4"], answerer(fwd))
        assert result["error"] is None, result
        assert src.state["video"].keyframes == 1  # still no new keyframe
        assert result["video_frames"] >= 60, result
        assert result["first_frame_ms"] is not None and result["first_frame_ms"] < 2500
