"""Test producers: real FFmpeg commands that send RTP to a Source's loopback ports."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import trio

LAVFI_INPUTS = [
    "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
    "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
]


def rtp_url(port: int) -> str:
    return f"udp://127.0.0.1:{port}?pkt_size=1200"


def lavfi_to_rtp(ffmpeg: str, ports: dict[str, int], sdp_path: Path, *, gop: int = 50,
                 duration: float | None = None) -> list[str]:
    """testsrc + sine → libx264 baseline yuv420p + libopus, one ``-f rtp`` leg per track."""
    argv = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error", *LAVFI_INPUTS]
    if duration is not None:
        argv += ["-t", str(duration)]
    if "video" in ports:
        argv += ["-map", "0:v:0", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                 "-profile:v", "baseline", "-bf", "0", "-tune", "zerolatency",
                 "-preset", "ultrafast", "-g", str(gop), "-keyint_min", str(gop),
                 "-sc_threshold", "0", "-b:v", "400k", "-payload_type", "96",
                 "-f", "rtp", rtp_url(ports["video"])]
    if "audio" in ports:
        argv += ["-map", "1:a:0", "-c:a", "libopus", "-ar", "48000", "-ac", "2",
                 "-b:a", "64k", "-payload_type", "111", "-f", "rtp", rtp_url(ports["audio"])]
    return argv + ["-sdp_file", str(sdp_path)]


def make_mp4_aac(ffmpeg: str, path: Path, seconds: float = 8.0) -> Path:
    """An MP4 with H264 (baseline, AVCC: no in-band SPS/PPS after muxing) and AAC audio."""
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=44100:duration={seconds}",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-profile:v", "baseline", "-bf", "0",
         "-g", "25", "-c:a", "aac", "-b:a", "96k", "-shortest", str(path)],
        check=True, timeout=120,
    )
    return path


def mp4_copy_to_rtp(ffmpeg: str, mp4: Path, ports: dict[str, int], sdp_path: Path) -> list[str]:
    """The copy leg: H264 copied with ``h264_mp4toannexb``, AAC transcoded to Opus."""
    return [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error",
            "-re", "-stream_loop", "-1", "-i", str(mp4),
            "-map", "0:v:0", "-c:v", "copy", "-bsf:v", "h264_mp4toannexb",
            "-payload_type", "96", "-f", "rtp", rtp_url(ports["video"]),
            "-map", "0:a:0", "-c:a", "libopus", "-ar", "48000", "-ac", "2", "-b:a", "64k",
            "-payload_type", "111", "-f", "rtp", rtp_url(ports["audio"]),
            "-sdp_file", str(sdp_path)]


async def wait_for_file(path: Path, timeout: float = 10.0) -> str:
    """Wait until ``path`` exists with content; return it."""
    with trio.fail_after(timeout):
        while True:
            if path.exists() and os.path.getsize(path) > 0:
                await trio.sleep(0.05)  # let FFmpeg finish writing it
                return path.read_text()
            await trio.sleep(0.02)


async def start_producer(nursery: trio.Nursery, argv: list[str]) -> trio.Process:
    """Start FFmpeg in ``nursery``; cancelling the nursery kills it."""
    return await nursery.start(
        lambda task_status: trio.run_process(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False,
            task_status=task_status,
        )
    )
