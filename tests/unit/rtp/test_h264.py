"""rtp.h264: NAL type inspection, keyframe detection, STAP-A, sprop — and real FFmpeg RTP."""

from __future__ import annotations

import base64
import re
import socket
import subprocess
from pathlib import Path

import pytest
import trio

from rtp.errors import ParseError
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

SPS = bytes.fromhex("6742c01eda0507ec04400000030040000006438a0a88")
PPS = bytes.fromhex("68ce3c80")
IDR_SLICE = b"\x65\x88\x84\x00\x33"
P_SLICE = b"\x41\x9a\x02\x04"


def fu_a(nal: bytes, *, start: bool, end: bool = False) -> bytes:
    """One FU-A fragment of ``nal`` (RFC 6184 5.8)."""
    indicator = (nal[0] & 0xE0) | 28
    header = (0x80 if start else 0) | (0x40 if end else 0) | (nal[0] & 0x1F)
    return bytes([indicator, header]) + nal[1:]


# --- sans-IO ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "types"),
    [
        (b"", []),
        (SPS, [7]),
        (IDR_SLICE, [5]),
        (P_SLICE, [1]),
        (build_stap_a([SPS, PPS]), [7, 8]),
        (build_stap_a([SPS, PPS, IDR_SLICE]), [7, 8, 5]),
        (build_stap_a([SPS, PPS])[:-2], [7]),  # truncated aggregate: what is readable
        (b"\x18", []),  # STAP-A with no units
        (fu_a(IDR_SLICE, start=True), [5]),
        (fu_a(IDR_SLICE, start=False), []),  # continuation fragments start nothing
        (fu_a(IDR_SLICE, start=False, end=True), []),
        (b"\x7c", []),  # FU-A without its header byte
        (b"\x19\x00", []),  # STAP-B, MTAP, FU-B: not produced by FFmpeg, not inspected
        (b"\x00\x01", []),  # type 0 is undefined
    ],
)
def test_nal_types(payload: bytes, types: list[int]) -> None:
    assert nal_types(payload) == types


def test_keyframe_and_parameter_set_detection() -> None:
    # Decision: a payload *starts* a keyframe when it carries an SPS or the first bytes of an
    # IDR; the STAP-A [SPS, PPS] that FFmpeg sends before each IDR therefore counts too.
    assert is_keyframe(build_stap_a([SPS, PPS]))
    assert is_keyframe(IDR_SLICE)
    assert is_keyframe(fu_a(IDR_SLICE, start=True))
    assert is_keyframe(SPS)
    assert not is_keyframe(fu_a(IDR_SLICE, start=False))
    assert not is_keyframe(P_SLICE)
    assert not is_keyframe(fu_a(P_SLICE, start=True))
    assert not is_keyframe(PPS)
    assert not is_keyframe(b"")
    assert has_parameter_sets(build_stap_a([SPS, PPS]))
    assert has_parameter_sets(build_stap_a([PPS, SPS, IDR_SLICE]))
    assert not has_parameter_sets(SPS)
    assert not has_parameter_sets(build_stap_a([SPS]))
    assert not has_parameter_sets(IDR_SLICE)


def test_build_stap_a_layout() -> None:
    payload = build_stap_a([SPS, PPS])
    # F=0, NRI = the highest of the units (SPS/PPS: 3), type 24; then size-prefixed units
    assert payload == b"\x78" + len(SPS).to_bytes(2, "big") + SPS + len(PPS).to_bytes(2, "big") + PPS
    assert build_stap_a([P_SLICE])[0] == (P_SLICE[0] & 0x60) | 24
    with pytest.raises(ValueError):
        build_stap_a([])
    with pytest.raises(ValueError):
        build_stap_a([SPS, b""])
    with pytest.raises(ValueError):
        build_stap_a([b"\x65" * 0x10000])


def test_parse_sprop() -> None:
    value = base64.b64encode(SPS).decode() + "," + base64.b64encode(PPS).decode()
    assert parse_sprop(value) == [SPS, PPS]
    assert parse_sprop(value.replace("=", "")) == [SPS, PPS]  # padding is optional in practice
    assert parse_sprop(" " + value.replace(",", ", ") + " ") == [SPS, PPS]


@pytest.mark.parametrize(
    ("value", "reason"),
    [("", "sprop-empty"), (",", "sprop-empty"), ("Z0LAHt@", "sprop-base64"),
     ("Z", "sprop-base64"), ("Z0LAH\u00e9", "sprop-base64"), ("====", "sprop-base64")],
)
def test_parse_sprop_garbage(value: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_sprop(value)
    assert info.value.reason == reason


def test_profile_level_id_from_sps() -> None:
    assert profile_level_id_from_sps(SPS) == "42c01e"
    for bad, reason in [(b"\x67\x42", "sps-short"), (PPS + b"\x00", "sps-type")]:
        with pytest.raises(ParseError) as info:
            profile_level_id_from_sps(bad)
        assert info.value.reason == reason


# --- real FFmpeg RTP --------------------------------------------------------------------------


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
