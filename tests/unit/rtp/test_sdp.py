"""rtp.sdp: offers (Chromium fixture, aiortc-generated), FFmpeg source SDP, answers."""

from __future__ import annotations

import asyncio
import re

import pytest

from rtp.errors import NoCommonCodec, SdpError
from rtp.sdp import (
    Answer,
    Codec,
    SourceTrack,
    build_answer,
    h264_profile,
    parse_offer,
    parse_source_sdp,
)
from tests.helpers.sdp_samples import CHROMIUM_OFFER, FFMPEG_SDP, FP

OUR_FP = ":".join(["5C"] * 32)


CANDIDATES = [("127.0.0.1", 41000)]


def source(plid: str = "42C01E", audio: bool = True) -> dict[str, SourceTrack]:
    tracks = parse_source_sdp(FFMPEG_SDP.replace("42C01E", plid))
    if not audio:
        del tracks["audio"]
    return tracks


def answer(offer_text: str = CHROMIUM_OFFER, tracks: dict[str, SourceTrack] | None = None,
           candidates: list[tuple[str, int]] = CANDIDATES) -> Answer:
    return build_answer(
        parse_offer(offer_text),
        ice_ufrag="srvU",
        ice_pwd="serverpassword0123456789",
        fingerprint=OUR_FP,
        candidates=candidates,
        tracks=source() if tracks is None else tracks,
        cname="cname1",
        stream_id="stream1",
    )


def sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    """Split an SDP text into session lines and per-m= line lists."""
    session: list[str] = []
    media: list[list[str]] = []
    for line in sdp.split("\r\n"):
        if not line:
            continue
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        else:
            session.append(line)
    return session, media


def test_parse_chromium_offer() -> None:
    offer = parse_offer(CHROMIUM_OFFER)
    assert offer.ice_ufrag == "Xk3c" and offer.ice_pwd == "9S0tVgbYgfeOQv9Wq7VMPqDV"
    assert offer.fingerprint == FP and offer.setup == "actpass" and offer.bundle == ["0", "1"]
    video, audio = offer.media
    assert (video.kind, video.mid, video.direction, video.port) == ("video", "0", "recvonly", 9)
    assert video.rtcp_mux and video.rtcp_rsize
    assert [c.payload_type for c in video.codecs][:4] == [96, 97, 103, 104]
    h264 = next(c for c in video.codecs if c.payload_type == 39)
    assert h264 == Codec(
        39, "H264", 90000, None,
        {"level-asymmetry-allowed": "1", "packetization-mode": "1", "profile-level-id": "4d001f"},
        ["nack", "nack pli"],
    )
    vp8 = video.codecs[0]
    assert vp8.name == "VP8" and "transport-cc" in vp8.rtcp_fb
    opus = audio.codecs[0]
    assert (opus.name, opus.clock_rate, opus.channels, opus.payload_type) == ("opus", 48000, 2, 111)
    assert opus.param("USEINBANDFEC") == "1"
    assert [c.name for c in audio.codecs] == [
        "opus", "red", "G722", "PCMU", "PCMA", "CN", "telephone-event", "telephone-event"
    ]


def test_session_level_credentials_and_static_pt() -> None:
    text = (
        "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\n"
        f"a=ice-ufrag:sess\na=ice-pwd:sessionpasswordsessionpw\na=fingerprint:sha-256 {FP}\n"
        "a=setup:active\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 0 8\na=mid:a\na=rtcp-mux\na=recvonly\n"
    )
    offer = parse_offer(text)
    assert (offer.ice_ufrag, offer.setup) == ("sess", "active")
    assert [(c.name, c.clock_rate) for c in offer.media[0].codecs] == [("PCMU", 8000), ("PCMA", 8000)]


def test_firefox_style_fingerprint_choice() -> None:
    text = CHROMIUM_OFFER.replace(
        f"a=fingerprint:sha-256 {FP}", f"a=fingerprint:sha-1 {':'.join(['11'] * 20)}\r\n"
        f"a=fingerprint:sha-256 {FP.lower()}"
    )
    assert parse_offer(text).fingerprint == FP


def _drop(line_prefix: str, text: str = CHROMIUM_OFFER) -> str:
    return "\r\n".join(line for line in text.split("\r\n") if not line.startswith(line_prefix))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not an SDP offer: missing v=0"),
        ("hello", "not an SDP offer: missing v=0"),
        (CHROMIUM_OFFER.replace("v=0", "v=1", 1), "missing v=0"),
        (_drop("a=ice-ufrag"), "missing a=ice-ufrag"),
        (_drop("a=ice-pwd"), "missing a=ice-pwd"),
        (_drop("a=fingerprint"), "missing sha-256 fingerprint"),
        (CHROMIUM_OFFER.replace("sha-256", "sha-1"), "missing sha-256 fingerprint"),
        (CHROMIUM_OFFER.replace(FP, "AB:CD"), "malformed sha-256 fingerprint"),
        (CHROMIUM_OFFER.replace("a=setup:actpass", "a=setup:passive"), "setup must be actpass or active"),
        (_drop("a=mid"), "missing a=mid"),
        (_drop("a=group:BUNDLE"), "BUNDLE"),
        (_drop("a=rtcp-mux"), "rtcp-mux"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no audio or video section"),
        ("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n",
         "no audio or video section"),
        (CHROMIUM_OFFER.replace("m=video 9", "m=video x"), "malformed m= port"),
        (re.sub(r"m=video [^\r]*", "m=video 9", CHROMIUM_OFFER), "malformed m= line"),
        (CHROMIUM_OFFER.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 VP8"), "malformed a=rtpmap"),
        (CHROMIUM_OFFER.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:300 VP8/90000"), "out of range"),
        (CHROMIUM_OFFER.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"), "unsupported transport"),
        (CHROMIUM_OFFER.replace("s=-", "garbage line"), "malformed SDP line"),
        (CHROMIUM_OFFER.replace("a=mid:1", "a=mid:0"), "duplicate a=mid"),
    ],
)
def test_offer_errors(text: str, message: str) -> None:
    with pytest.raises(SdpError, match=re.escape(message)):
        parse_offer(text)


def test_parse_source_sdp() -> None:
    tracks = parse_source_sdp(FFMPEG_SDP)
    assert set(tracks) == {"video", "audio"}
    video = tracks["video"]
    assert (video.codec.name, video.codec.payload_type, video.codec.clock_rate) == ("H264", 96, 90000)
    assert video.profile_level_id == "42C01E" and video.port == 40002
    assert video.codec.param("packetization-mode") == "1"
    assert video.sprop_parameter_sets == "Z0LAHtkAoD2wEQAAAwABAAADADIPFi5I,aMuMsg=="
    audio = tracks["audio"]
    assert (audio.codec.name, audio.codec.clock_rate, audio.codec.channels) == ("opus", 48000, 2)


def test_parse_source_sdp_vp8_only_and_errors() -> None:
    vp8 = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nt=0 0\nm=video 5000 RTP/AVP 96\na=rtpmap:96 VP8/90000\n"
    tracks = parse_source_sdp(vp8)
    assert list(tracks) == ["video"] and tracks["video"].codec.name == "VP8"
    with pytest.raises(SdpError, match="missing v=0"):
        parse_source_sdp("nothing")
    with pytest.raises(SdpError, match="no audio or video section"):
        parse_source_sdp("v=0\ns=x\n")
    with pytest.raises(SdpError, match="no codec"):
        parse_source_sdp("v=0\nm=video 5000 RTP/AVP 96\n")


@pytest.mark.parametrize(
    ("plid", "profile"),
    [
        ("42001f", "baseline"), ("42e01f", "constrained-baseline"), ("42C01E", "constrained-baseline"),
        ("4d001f", "main"), ("4D4028", "main"), ("4d8028", "constrained-baseline"),
        ("640028", "high"), ("640c1f", "constrained-high"), ("f4001f", "high-444"),
        ("F4001E", "high-444"), ("zz0000", None), ("42", None), (None, None), ("6e0028", None),
    ],
)
def test_h264_profile(plid: str | None, profile: str | None) -> None:
    assert h264_profile(plid) == profile


def test_answer_shape_for_chromium() -> None:
    ans = answer()
    session, media = sections(ans.sdp)
    assert session[0] == "v=0"
    assert "a=ice-lite" in session and "a=group:BUNDLE 0 1" in session
    assert len(media) == 2
    assert media[0][0] == "m=video 41000 UDP/TLS/RTP/SAVPF 109 114"  # + its offered RTX
    assert media[1][0] == "m=audio 41000 UDP/TLS/RTP/SAVPF 111"
    for sec in media:
        for line in ("a=rtcp-mux", "a=setup:passive", "a=sendonly", "a=ice-ufrag:srvU",
                     "a=ice-pwd:serverpassword0123456789", f"a=fingerprint:sha-256 {OUR_FP}",
                     "a=candidate:1 1 udp 2130706431 127.0.0.1 41000 typ host"):
            assert line in sec, line
        assert sec[-1] == "a=end-of-candidates"
        assert not any(line.startswith("a=ice-lite") for line in sec)
    video, audio = ans.tracks["video"], ans.tracks["audio"]
    assert (video.mid, video.payload_type, audio.mid, audio.payload_type) == ("0", 109, "1", 111)
    assert "a=fmtp:109 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42c01e" in media[0]
    assert "a=rtcp-fb:109 nack" in media[0] and "a=rtcp-fb:109 nack pli" in media[0]
    assert not any(line.startswith("a=rtcp-fb") for line in media[1])
    assert "a=rtpmap:111 opus/48000/2" in media[1]
    assert f"a=ssrc:{video.ssrc} cname:cname1" in media[0]
    assert f"a=ssrc:{audio.ssrc} cname:cname1" in media[1]
    assert any(line.startswith("a=msid:stream1 ") for line in media[0])
    assert video.ssrc != audio.ssrc and 0 < video.ssrc < 2**32
    assert ans.warnings == []
    # RFC 4588: the viewer offered rtx with apt=109, so repairs get their own SSRC
    assert (video.rtx_payload_type, audio.rtx_payload_type) == (114, None)
    assert "a=rtpmap:114 rtx/90000" in media[0] and "a=fmtp:114 apt=109" in media[0]
    assert f"a=ssrc-group:FID {video.ssrc} {video.rtx_ssrc}" in media[0]
    assert f"a=ssrc:{video.rtx_ssrc} cname:cname1" in media[0]
    assert video.rtx_ssrc not in (video.ssrc, audio.ssrc)


def test_ssrcs_random_per_answer() -> None:
    ssrcs = {answer().tracks["video"].ssrc for _ in range(5)}
    assert len(ssrcs) == 5


@pytest.mark.parametrize(
    ("plid", "pt", "answered"),
    [
        ("42C01E", 109, "42c01e"),  # constrained baseline: exact match
        ("42001e", 103, "42001e"),  # baseline: exact match
        ("4D4028", 39, "4d4028"),  # main: exact, real level echoed
        ("4d8028", 109, "4d8028"),  # main with constraint_set0 = constrained baseline
        ("F4001E", 112, "f4001e"),  # High 4:4:4 as offered by Chromium 156
    ],
)
def test_h264_selection(plid: str, pt: int, answered: str) -> None:
    ans = answer(tracks=source(plid))
    assert ans.tracks["video"].payload_type == pt
    assert ans.tracks["video"].codec.param("profile-level-id") == answered
    assert ans.tracks["video"].codec.param("packetization-mode") == "1"


def test_h264_compatible_profile_answers_offered_profile() -> None:
    # Only main offered; a constrained-baseline source plays on a main decoder.
    offer = CHROMIUM_OFFER
    for pt in ("103", "109", "112"):
        offer = offer.replace(f"a=rtpmap:{pt} H264/90000", f"a=rtpmap:{pt} H265/90000")
    ans = answer(offer, tracks=source("42C01E"))
    assert ans.tracks["video"].payload_type == 39
    assert ans.tracks["video"].codec.param("profile-level-id") == "4d001e"


def test_high_profile_source_has_no_common_codec() -> None:
    with pytest.raises(NoCommonCodec) as info:
        answer(tracks=source("640028", audio=False))
    message = str(info.value)
    assert "offer has no H264 packetization-mode=1" in message
    assert "source is H264 profile 640028" in message


def test_high_video_with_opus_audio_answers_audio_only() -> None:
    ans = answer(tracks=source("640028"))
    assert set(ans.tracks) == {"audio"}
    assert any("640028" in w for w in ans.warnings)
    _, media = sections(ans.sdp)
    assert media[0][0].startswith("m=video 41000 ") and "a=inactive" in media[0]


def test_vp8_source() -> None:
    tracks = {"video": SourceTrack("video", Codec(96, "VP8", 90000))}
    ans = answer(tracks=tracks)
    assert ans.tracks["video"].payload_type == 96
    session, media = sections(ans.sdp)
    assert "a=group:BUNDLE 0 1" in session
    assert "a=inactive" in media[1] and "m=audio 41000 UDP/TLS/RTP/SAVPF 111" == media[1][0]
    assert "a=sendonly" in media[0]


def test_aac_audio_is_not_offered() -> None:
    aac = {"audio": SourceTrack("audio", Codec(97, "MPEG4-GENERIC", 44100, 2))}
    with pytest.raises(NoCommonCodec, match="opus/48000/2"):
        answer(tracks=aac)
    tracks = {**source(audio=False), **aac}
    ans = answer(tracks=tracks)
    assert set(ans.tracks) == {"video"} and any("MPEG4-GENERIC" in w for w in ans.warnings)


def test_offer_kind_missing_in_source_is_warning() -> None:
    video_only_offer = CHROMIUM_OFFER.split("m=audio")[0].replace("BUNDLE 0 1", "BUNDLE 0")
    ans = answer(video_only_offer)
    assert set(ans.tracks) == {"video"}
    assert ans.warnings and "audio" in ans.warnings[0]


def test_source_without_offered_kinds() -> None:
    audio_only_offer = (
        CHROMIUM_OFFER.split("m=video")[0].replace("BUNDLE 0 1", "BUNDLE 1")
        + "m=audio" + CHROMIUM_OFFER.split("m=audio")[1]
    )
    with pytest.raises(NoCommonCodec, match="source has video"):
        answer(audio_only_offer, tracks=source(audio=False))


def test_datachannel_section_rejected_and_not_bundled() -> None:
    offer = CHROMIUM_OFFER.replace("BUNDLE 0 1", "BUNDLE 0 1 2") + (
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
        "a=mid:2\r\na=sctp-port:5000\r\n"
    )
    ans = answer(offer)
    session, media = sections(ans.sdp)
    assert "a=group:BUNDLE 0 1" in session
    assert media[2][0] == "m=application 0 UDP/DTLS/SCTP webrtc-datachannel"
    assert "a=mid:2" in media[2]


def test_multiple_candidates_and_ipv6() -> None:
    ans = answer(candidates=[("::1", 42000), ("127.0.0.1", 42000)])
    _, media = sections(ans.sdp)
    assert media[0][0].startswith("m=video 42000 ")
    assert "c=IN IP6 ::1" in media[0]
    assert "a=candidate:1 1 udp 2130706431 ::1 42000 typ host" in media[0]
    assert "a=candidate:2 1 udp 2130706430 127.0.0.1 42000 typ host" in media[0]
    with pytest.raises(ValueError):
        answer(candidates=[])


def test_sendonly_offer_gets_inactive_answer() -> None:
    offer = CHROMIUM_OFFER.replace("a=recvonly", "a=sendonly")
    with pytest.raises(NoCommonCodec):
        answer(offer)
    offer = CHROMIUM_OFFER.replace("a=recvonly", "a=sendrecv")
    _, media = sections(answer(offer).sdp)
    assert "a=sendonly" in media[0] and "a=sendonly" in media[1]


def _aiortc_roundtrip(direction: str, kinds: tuple[str, ...], tracks: dict[str, SourceTrack]):
    """Create an aiortc offer, answer it, apply the answer; return (answer, aiortc codecs)."""
    import aioice.ice
    from aiortc import RTCPeerConnection, RTCSessionDescription

    async def run() -> tuple[Answer, dict[str, tuple[str, str | None, list]]]:
        original = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
        pc = RTCPeerConnection()
        try:
            for kind in kinds:
                pc.addTransceiver(kind, direction=direction)
            await pc.setLocalDescription(await pc.createOffer())
            ans = build_answer(
                parse_offer(pc.localDescription.sdp),
                ice_ufrag="srvU",
                ice_pwd="serverpassword0123456789",
                fingerprint=OUR_FP,
                candidates=CANDIDATES,
                tracks=tracks,
            )
            await pc.setRemoteDescription(RTCSessionDescription(sdp=ans.sdp, type="answer"))
            got = {}
            for t in pc.getTransceivers():
                codecs = t._codecs  # negotiated codecs, as aiortc stores them
                got[t.kind] = (t.currentDirection, t.mid, codecs)
            return ans, got
        finally:
            await pc.close()
            aioice.ice.get_host_addresses = original

    return asyncio.run(run())


def test_aiortc_accepts_answer() -> None:
    ans, got = _aiortc_roundtrip("recvonly", ("video", "audio"), source())
    assert got["video"][0] == "recvonly" and got["audio"][0] == "recvonly"
    video_codecs, audio_codecs = got["video"][2], got["audio"][2]
    video = ans.tracks["video"]
    assert [c.payloadType for c in video_codecs] == [video.payload_type, video.rtx_payload_type]
    assert video_codecs[1].mimeType == "video/rtx"
    assert video_codecs[1].parameters["apt"] == video.payload_type
    assert video_codecs[0].mimeType == "video/H264"
    assert video_codecs[0].parameters["packetization-mode"] == "1"
    assert audio_codecs[0].mimeType == "audio/opus"
    assert audio_codecs[0].payloadType == ans.tracks["audio"].payload_type
    assert got["video"][1] == ans.tracks["video"].mid


def test_aiortc_sendrecv_offer_vp8() -> None:
    tracks = {"video": SourceTrack("video", Codec(100, "VP8", 90000))}
    ans, got = _aiortc_roundtrip("sendrecv", ("video",), tracks)
    assert got["video"][0] == "recvonly"
    assert got["video"][2][0].mimeType == "video/VP8"
    assert got["video"][2][0].payloadType == ans.tracks["video"].payload_type


def test_single_section_without_bundle_group() -> None:
    offer = CHROMIUM_OFFER.split("m=audio")[0].replace("a=group:BUNDLE 0 1\r\n", "")
    ans = answer(offer)
    session, media = sections(ans.sdp)
    assert not any(line.startswith("a=group") for line in session)
    assert "a=ice-lite" in session and len(media) == 1 and "a=sendonly" in media[0]


def test_aiortc_accepts_inactive_section() -> None:
    # aiortc offers H264 42001f/42e01f only: a High source leaves video inactive, audio plays.
    ans, got = _aiortc_roundtrip("recvonly", ("video", "audio"), source("640028"))
    assert set(ans.tracks) == {"audio"} and ans.warnings
    assert got["video"][0] == "inactive"
    assert got["audio"][0] == "recvonly"


def test_a_second_video_track_serves_offers_without_its_first_codec() -> None:
    two = parse_source_sdp(FFMPEG_SDP + "m=video 40006 RTP/AVP 98\r\na=rtpmap:98 VP8/90000\r\n")
    assert list(two) == ["video", "audio", "video2"]
    assert two["video2"].kind == "video" and two["video2"].codec.name == "VP8"
    # Chromium offers both: the first video track (H264) is chosen
    ans = answer(tracks=two)
    assert set(ans.tracks) == {"video", "audio"}
    # without H264 in the offer the VP8 track carries the video section
    vp8_only = "\n".join(line for line in CHROMIUM_OFFER.split("\n")
                         if "H264" not in line and "packetization-mode" not in line)
    ans = answer(vp8_only, tracks=two)
    assert set(ans.tracks) == {"video2", "audio"}
    video = ans.tracks["video2"]
    assert video.codec.name == "VP8" and video.mid == "0"
    assert f"a=rtpmap:{video.payload_type} VP8/90000" in ans.sdp
    assert ans.warnings == []




# --- issue 21: ICE-TCP candidates, the WHEP PATCH body (trickle-ice-sdpfrag) ---------------


def test_tcp_candidates_are_passive_and_below_every_udp_one() -> None:
    from rtp.sdp import candidate_lines

    lines = candidate_lines([("10.0.0.1", 5000), ("192.0.2.1", 5000)],
                            [("10.0.0.1", 8555), ("192.0.2.1", 8555)])
    assert lines[-1] == "a=end-of-candidates"
    udp = [int(x.split()[3]) for x in lines if " udp " in x]
    tcp = [int(x.split()[3]) for x in lines if " tcp " in x]
    assert len(udp) == len(tcp) == 2 and max(tcp) < min(udp)
    assert lines[2] == ("a=candidate:1001 1 tcp 1520435199 10.0.0.1 8555 typ host "
                        "tcptype passive")


def test_sdpfrag_parser() -> None:
    import pytest

    from rtp.errors import SdpError
    from rtp.sdp import parse_sdpfrag

    frag = parse_sdpfrag("a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
                         "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
                         "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host "
                         "generation 0 ufrag EsAw network-id 1\r\na=end-of-candidates\r\n")
    assert (frag.ice_ufrag, frag.mids, frag.end_of_candidates) == ("EsAw", ("0",), True)
    assert frag.candidates[0].startswith("candidate:1387637174 1 udp")
    assert parse_sdpfrag("").ice_ufrag is None
    for bad, why in [("a=ice-ufrag:abc\r\n", "ice-ufrag"),
                     ("a=ice-ufrag:abcd\r\na=ice-pwd:short\r\n", "ice-pwd"),
                     ("a=ice-pwd:" + "x" * 22, "without an a=ice-ufrag"),
                     ("a=ice-ufrag:abcd\r\na=ice-ufrag:efgh\r\n", "more than one"),
                     ("a=candidate:1 1 udp\r\n", "malformed candidate"),
                     ("hello world\r\n", "not an SDP line"),
                     ("a=ice-ufrag:ab cd\r\n", "ice-ufrag")]:
        with pytest.raises(SdpError, match=why):
            parse_sdpfrag(bad)
