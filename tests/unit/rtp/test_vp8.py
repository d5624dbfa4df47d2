"""rtp.vp8: payload descriptor and keyframe detection, and real FFmpeg (libvpx) RTP."""

from __future__ import annotations

import socket
import subprocess

import pytest
import trio

from rtp.errors import ParseError
from rtp.packet import parse_rtp
from rtp.vp8 import descriptor_size, is_keyframe

KEY_HEADER = b"\x10\x02\x00\x9d\x01\x2a"  # VP8 key frame: P bit clear, start code 9d 01 2a
INTER_HEADER = b"\x31\x02\x00"  # P bit set


@pytest.mark.parametrize(
    ("payload", "size"),
    [
        (b"\x10", 1),
        (b"\x90\x00", 2),  # X with no optional fields
        (b"\x90\x80\x05", 3),  # 7-bit PictureID
        (b"\x90\x80\x85\x05", 4),  # 15-bit PictureID
        (b"\x90\xf0\x85\x05\x01\x02", 6),  # PictureID, TL0PICIDX, TID/KEYIDX
        (b"\x90\x20\x40", 3),  # K only
    ],
)
def test_descriptor_size(payload: bytes, size: int) -> None:
    assert descriptor_size(payload) == size


@pytest.mark.parametrize("payload", [b"", b"\x90", b"\x90\x80", b"\x90\xc0\x85\x05"])
def test_descriptor_truncated(payload: bytes) -> None:
    with pytest.raises(ParseError) as info:
        descriptor_size(payload)
    assert info.value.reason == "vp8-short"


def test_is_keyframe() -> None:
    assert is_keyframe(b"\x10" + KEY_HEADER[1:])
    assert is_keyframe(b"\x90\x80\x85\x05" + b"\x00\x02\x00")
    assert not is_keyframe(b"\x10" + INTER_HEADER)
    assert not is_keyframe(b"\x00" + KEY_HEADER[1:])  # not the start of a frame
    assert not is_keyframe(b"\x11" + KEY_HEADER[1:])  # S=1 but partition 1
    assert not is_keyframe(b"\x10")  # nothing behind the descriptor
    assert not is_keyframe(b"\x90\x80")  # truncated descriptor
    assert not is_keyframe(b"")


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
