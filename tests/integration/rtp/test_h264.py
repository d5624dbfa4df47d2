"""rtp.h264 on what a real FFmpeg sends: keyframes found in its RTP packets."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest
import trio

from rtp.h264 import (
    build_stap_a,
    has_parameter_sets,
    is_keyframe,
    nal_types,
    parse_sprop,
    profile_level_id_from_sps,
)
from rtp.packet import parse_rtp
from rtp.rtcp import SenderReport, parse_rtcp


async def _receive_ffmpeg_rtp(ffmpeg: str, tmp_path: Path, seconds: int, gop: int,
                              extra: list[str]) -> tuple[list[bytes], list[bytes], str]:
    """Run libx264 → ``-f rtp`` to a socket we bound; return (RTP, RTCP, the SDP file)."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sdp = tmp_path / "h264.sdp"
    argv = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error",
            "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", str(seconds),
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-profile:v", "baseline", "-bf", "0",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", *extra,
            "-payload_type", "96", "-f", "rtp", f"udp://127.0.0.1:{port}?pkt_size=1200",
            "-sdp_file", str(sdp)]
    rtp: list[bytes] = []
    rtcp: list[bytes] = []

    async def receive() -> None:
        while True:
            data = await sock.recv(2048)
            (rtcp if 200 <= data[1] <= 204 else rtp).append(data)

    with sock, trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.run_process(argv, stdin=subprocess.DEVNULL)
            await trio.sleep(0.3)  # the last datagrams
            nursery.cancel_scope.cancel()
    return rtp, rtcp, sdp.read_text()


@pytest.mark.parametrize("global_header", [False, True])
async def test_keyframes_in_real_ffmpeg_rtp(ffmpeg: str, tmp_path: Path,
                                            global_header: bool) -> None:
    extra = ["-flags", "+global_header"] if global_header else []
    rtp, rtcp, sdp = await _receive_ffmpeg_rtp(ffmpeg, tmp_path, seconds=2, gop=25, extra=extra)
    headers = [parse_rtp(p) for p in rtp]
    seqs = [h.sequence for h in headers]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))], "loopback lost packets"
    payloads = [p[h.header_size:] for p, h in zip(rtp, headers, strict=True)]
    assert len({h.timestamp for h in headers}) == 50  # 2 s at 25 fps

    idr_starts = [i for i, pl in enumerate(payloads) if 5 in nal_types(pl)]
    assert len(idr_starts) == 2  # two GOPs of 25 frames → two IDR pictures
    keyframe_frames = {headers[i].timestamp for i, pl in enumerate(payloads) if is_keyframe(pl)}
    assert keyframe_frames == {headers[i].timestamp for i in idr_starts}

    # Measured: without ``-flags +global_header`` libx264 sends SPS+PPS in-band (a STAP-A right
    # before every IDR, same frame) and FFmpeg's SDP carries neither sprop-parameter-sets nor
    # profile-level-id. With it, the parameter sets are in the SDP only — never in-band (like
    # an MP4 copy): the Source must inject them from sprop-parameter-sets.
    sprop = re.search(r"sprop-parameter-sets=([^;\s]+)", sdp)
    assert (sprop is not None) == global_header, sdp
    assert ("profile-level-id" in sdp) == global_header, sdp
    if not global_header:
        for i in idr_starts:
            assert i > 0 and has_parameter_sets(payloads[i - 1]), nal_types(payloads[i - 1])
            assert headers[i - 1].timestamp == headers[i].timestamp
        assert idr_starts[0] == 1  # the stream opens with the parameter sets
        sps = payloads[0][3:3 + int.from_bytes(payloads[0][1:3], "big")]
        assert profile_level_id_from_sps(sps) == "42c00d"  # constrained baseline, level 1.3
    else:
        assert sprop is not None
        assert not any(has_parameter_sets(pl) for pl in payloads)
        units = parse_sprop(sprop.group(1))
        assert [u[0] & 0x1F for u in units] == [7, 8]
        plid = re.search(r"profile-level-id=([0-9A-Fa-f]{6})", sdp)
        assert plid is not None and profile_level_id_from_sps(units[0]) == plid.group(1).lower()
        assert has_parameter_sets(build_stap_a(units))

    # FFmpeg's sender reports arrive on the same port and parse
    reports = [r for data in rtcp for r in parse_rtcp(data)]
    assert reports and all(isinstance(r, SenderReport) for r in reports)
    assert {r.ssrc for r in reports} == {headers[0].ssrc}  # type: ignore[union-attr]
