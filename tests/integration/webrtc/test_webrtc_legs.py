"""The FFmpeg RTP leg builder and the input probe, checked with real FFmpeg.

For each kind of input the legs are run for real to loopback sockets: RTP must arrive with
the right payload types, the SDP must describe something a browser decodes (H264
packetization-mode=1 in a Baseline/Main profile, Opus 48000/2), and a copied H264 stream
must carry SPS/PPS in-band.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from rtp.h264 import nal_types, profile_level_id_from_sps
from rtp.packet import parse_rtp
from rtp.sdp import h264_profile, parse_source_sdp
from trio_core.ffmpeg.mediainfo import probe_inputs
from trio_core.webrtc.legs import build_rtp_outputs


@dataclass
class Captured:
    packets: dict[str, list[bytes]] = field(default_factory=dict)
    sdp: str = ""
    argv: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)


def make_file(ffmpeg: str, path: Path, *args: str) -> Path:
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *args, str(path)],
                   check=True, timeout=120)
    return path


async def run_legs(ffmpeg: str, tmp_path: Path, inputs: list[tuple[list[str], str]],
                   force_transcode: bool = False, seconds: float = 2.5) -> Captured:
    @dataclass
    class Inp:
        address: str
        options: list[str]

    info = await probe_inputs(ffmpeg, [Inp(a, o) for o, a in inputs])
    socks = {}
    for kind in ("video", "audio"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks[kind] = s
    out = Captured()
    try:
        sdp_path = tmp_path / "legs.sdp"
        legs = build_rtp_outputs(info, video_port=socks["video"].getsockname()[1],
                                 audio_port=socks["audio"].getsockname()[1], video_pt=102,
                                 audio_pt=109, force_transcode=force_transcode,
                                 sdp_path=str(sdp_path))
        argv = [ffmpeg, "-hide_banner", "-loglevel", "error"]
        for options, address in inputs:
            argv += [*options, "-i", address]
        for options, address in legs.outputs:
            argv += [*options, address]
        out.argv, out.decisions = argv, legs.decisions
        out.packets = {k: [] for k in socks}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: trio.run_process(argv, stdin=subprocess.DEVNULL,
                                                        check=False))
            for kind, s in socks.items():
                nursery.start_soon(_collect, s, out.packets[kind])
            await trio.sleep(seconds)
            nursery.cancel_scope.cancel()
        out.sdp = sdp_path.read_text() if sdp_path.exists() else ""
    finally:
        for s in socks.values():
            s.close()
    return out


async def _collect(sock: socket.socket, into: list[bytes]) -> None:
    while True:
        await trio.lowlevel.wait_readable(sock)
        while True:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                break
            if len(data) > 1 and not 192 <= data[1] <= 223:  # RTP, not FFmpeg's SRs
                into.append(data)


def assert_browser_h264(cap: Captured) -> None:
    tracks = parse_source_sdp(cap.sdp)
    video = tracks["video"].codec
    assert video.name.upper() == "H264" and video.payload_type == 102
    assert video.param("packetization-mode") == "1"
    # the SDP may lack profile-level-id (libx264 without global headers): read the SPS
    sps = next(p[12 + 3:] for p in cap.packets["video"] if 7 in nal_types(p[12:])
               and p[12] & 0x1F == 24) if not tracks["video"].profile_level_id else None
    plid = tracks["video"].profile_level_id or profile_level_id_from_sps(sps)  # type: ignore[arg-type]
    assert h264_profile(plid) in ("constrained-baseline", "baseline", "main"), plid
    assert {parse_rtp(p).payload_type for p in cap.packets["video"]} == {102}


def assert_browser_opus(cap: Captured) -> None:
    audio = parse_source_sdp(cap.sdp)["audio"].codec
    assert (audio.name.lower(), audio.clock_rate, audio.channels) == ("opus", 48000, 2)
    assert len(cap.packets["audio"]) > 40  # 20 ms frames
    assert {parse_rtp(p).payload_type for p in cap.packets["audio"]} == {109}


async def test_lavfi_is_transcoded_to_baseline_and_opus(ffmpeg: str, tmp_path: Path) -> None:
    cap = await run_legs(ffmpeg, tmp_path, [
        (["-re", "-f", "lavfi"], "testsrc=size=320x240:rate=25"),
        (["-re", "-f", "lavfi"], "sine=frequency=440:sample_rate=48000"),
    ])
    assert "-map" in cap.argv and "1:0" in cap.argv  # audio from the second input
    assert_browser_h264(cap)
    assert_browser_opus(cap)
    assert any("libx264" in d for d in cap.decisions)


async def test_mp4_h264_baseline_aac_copies_video_with_in_band_sps(ffmpeg: str,
                                                                   tmp_path: Path) -> None:
    mp4 = make_file(ffmpeg, tmp_path / "b.mp4", "-f", "lavfi", "-i",
                    "testsrc=size=320x240:rate=25:duration=6", "-f", "lavfi", "-i",
                    "sine=duration=6", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-profile:v",
                    "baseline", "-g", "25", "-c:a", "aac")
    cap = await run_legs(ffmpeg, tmp_path, [(["-re"], str(mp4))])
    assert "copy" in cap.argv and "h264_mp4toannexb" in cap.argv
    assert any("copied" in d for d in cap.decisions)
    assert_browser_h264(cap)
    assert_browser_opus(cap)
    # every IDR is preceded by SPS and PPS in-band
    types = [nal_types(p[12:]) for p in cap.packets["video"]]
    idr = [i for i, t in enumerate(types) if 5 in t]
    assert idr
    for i in idr:
        seen = {n for t in types[max(0, i - 3):i + 1] for n in t}
        assert {7, 8} <= seen


async def test_mp4_h264_high_is_transcoded(ffmpeg: str, tmp_path: Path) -> None:
    mp4 = make_file(ffmpeg, tmp_path / "h.mp4", "-f", "lavfi", "-i",
                    "testsrc=size=320x240:rate=25:duration=6", "-f", "lavfi", "-i",
                    "sine=duration=6", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-profile:v",
                    "high", "-c:a", "aac")
    cap = await run_legs(ffmpeg, tmp_path, [(["-re"], str(mp4))])
    assert "libx264" in cap.argv and "h264_mp4toannexb" not in cap.argv
    assert any("High" in d for d in cap.decisions)
    assert_browser_h264(cap)


@pytest.mark.parametrize("kind", ["video", "audio"])
async def test_single_track_inputs_get_one_leg(ffmpeg: str, tmp_path: Path, kind: str) -> None:
    source = "testsrc=size=320x240:rate=25" if kind == "video" else "sine=sample_rate=48000"
    cap = await run_legs(ffmpeg, tmp_path, [(["-re", "-f", "lavfi"], source)])
    other = "audio" if kind == "video" else "video"
    assert cap.packets[kind] and not cap.packets[other]
    assert set(parse_source_sdp(cap.sdp)) == {kind}
    assert any(f"no {other}" in d for d in cap.decisions)


class _Input:
    def __init__(self, address: str, options: list[str]) -> None:
        self.address, self.options = address, options


def _h264_file(ffmpeg: str, path: Path, *encode: str) -> Path:
    return make_file(ffmpeg, path, "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=3",
                     "-c:v", "libx264", *encode)


async def test_main_with_b_frames_is_transcoded_and_without_is_copied(ffmpeg: str,
                                                                       tmp_path: Path) -> None:
    bframes = _h264_file(ffmpeg, tmp_path / "mb.mp4", "-pix_fmt", "yuv420p", "-profile:v", "main",
                         "-bf", "3")
    no_b = _h264_file(ffmpeg, tmp_path / "m0.mp4", "-pix_fmt", "yuv420p", "-profile:v", "main",
                      "-bf", "0")
    info = await probe_inputs(ffmpeg, [_Input(str(bframes), ["-re"])])
    assert info is not None and info.video is not None
    assert info.video.profile == "Main" and info.video.b_frames is True
    assert info.video.frames_checked > 10
    legs = build_rtp_outputs(info, video_port=5000, audio_port=None, video_pt=96, audio_pt=111,
                             force_transcode=False, sdp_path="/tmp/x.sdp")
    flat = [a for options, _ in legs.outputs for a in options]
    assert "libx264" in flat and "copy" not in flat
    assert any("has B-frames" in d for d in legs.decisions), legs.decisions

    info = await probe_inputs(ffmpeg, [_Input(str(no_b), [])])
    assert info is not None and info.video is not None and info.video.b_frames is False
    legs = build_rtp_outputs(info, video_port=5000, audio_port=None, video_pt=96, audio_pt=111,
                             force_transcode=False, sdp_path="/tmp/x.sdp")
    flat = [a for options, _ in legs.outputs for a in options]
    assert "copy" in flat and "h264_mp4toannexb" in flat
    assert any("no B-frames in" in d for d in legs.decisions), legs.decisions


async def test_ten_bit_and_interlaced_h264_are_transcoded(ffmpeg: str, tmp_path: Path) -> None:
    ten = _h264_file(ffmpeg, tmp_path / "ten.mp4", "-pix_fmt", "yuv420p10le", "-bf", "0")
    inter = make_file(ffmpeg, tmp_path / "i.mp4", "-f", "lavfi", "-i",
                      "testsrc=size=320x240:rate=25:duration=3", "-vf", "interlace",
                      "-c:v", "libx264", "-pix_fmt", "yuv420p", "-profile:v", "main", "-bf", "0",
                      "-flags", "+ildct+ilme")
    for path, reason in ((ten, "High 10"), (inter, "interlaced")):
        info = await probe_inputs(ffmpeg, [_Input(str(path), [])])
        legs = build_rtp_outputs(info, video_port=5000, audio_port=None, video_pt=96,
                                 audio_pt=111, force_transcode=False, sdp_path="/tmp/x.sdp")
        flat = [a for options, _ in legs.outputs for a in options]
        assert "libx264" in flat and "copy" not in flat, (path, legs.decisions)
        assert any(reason in d for d in legs.decisions), legs.decisions


async def test_process_state_keeps_the_b_frame_decision(ffmpeg: str, tmp_path: Path) -> None:
    from tests.helpers.api import Api
    from tests.helpers.whep import wait_live, webrtc_process, webrtc_server

    mp4 = _h264_file(ffmpeg, tmp_path / "mb.mp4", "-pix_fmt", "yuv420p", "-profile:v", "main",
                     "-bf", "3")
    async with webrtc_server(tmp_path, ffmpeg) as srv:
        api = Api(srv.url)
        cfg = webrtc_process("cam", input=[{"id": "in", "address": str(mp4),
                                            "options": ["-re", "-stream_loop", "-1"]}])
        assert (await api.post("/api/v3/process", cfg)).status_code == 200
        state = await wait_live(api, "cam")
        webrtc = state["webrtc"]
        assert webrtc["input"]["video"]["b_frames"] is True
        assert webrtc["input"]["video"]["profile"] == "Main"
        assert any("has B-frames" in d and "libx264" in d for d in webrtc["decisions"]), webrtc
