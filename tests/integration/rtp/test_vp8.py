"""rtp.vp8 on what a real FFmpeg sends: keyframes found in its VP8 RTP packets."""

from __future__ import annotations

import socket
import subprocess

import trio

from rtp.packet import parse_rtp
from rtp.vp8 import is_keyframe


async def test_keyframes_in_real_ffmpeg_vp8(ffmpeg: str) -> None:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    argv = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error",
            "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "2",
            "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k",
            "-g", "25", "-keyint_min", "25", "-auto-alt-ref", "0",
            "-payload_type", "96", "-f", "rtp", f"udp://127.0.0.1:{port}?pkt_size=1200"]
    rtp: list[bytes] = []

    async def receive() -> None:
        while True:
            data = await sock.recv(2048)
            if not 200 <= data[1] <= 204:
                rtp.append(data)

    with sock, trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.run_process(argv, stdin=subprocess.DEVNULL)
            await trio.sleep(0.3)
            nursery.cancel_scope.cancel()
    headers = [parse_rtp(p) for p in rtp]
    payloads = [p[h.header_size:] for p, h in zip(rtp, headers, strict=True)]
    assert len({h.timestamp for h in headers}) == 50
    starts = [i for i, pl in enumerate(payloads) if is_keyframe(pl)]
    assert len(starts) == 2, starts  # -g 25 over 50 frames
    assert starts[0] == 0
