"""rtp.whip_sdp: what a WHIP answer takes from real publishers' offers (FFmpeg's ``-f whip``
muxer as captured from FFmpeg 9.0.2, Chromium's shape) and which DTLS role it picks."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtp.errors import SdpError
from rtp.whip_sdp import (
    build_publish_answer,
    choose_tracks,
    parse_publish_offer,
    source_tracks,
)
from tests.helpers.sdp_samples import CHROMIUM_OFFER

FP = ":".join(["CE"] * 32)
# FFmpeg 9.0.2 `-f whip` offer (captured), default flags: setup:passive, H264 + rtx, opus
FFMPEG_OFFER = f"""v=0
o=FFmpeg 4489045141692799359 2 IN IP4 127.0.0.1
s=FFmpegPublishSession
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=ice-ufrag:6dc6985b
a=ice-pwd:23a6dbab6838a5b6767df472744d5cbe
a=fingerprint:sha-256 {FP}
a=setup:passive
a=mid:0
a=sendonly
a=msid:FFmpeg audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=ssrc:283969054 cname:FFmpeg
m=video 9 UDP/TLS/RTP/SAVPF 106 105
c=IN IP4 0.0.0.0
a=ice-ufrag:6dc6985b
a=ice-pwd:23a6dbab6838a5b6767df472744d5cbe
a=fingerprint:sha-256 {FP}
a=setup:passive
a=mid:1
a=sendonly
a=msid:FFmpeg video
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:106 H264/90000
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42000d
a=rtcp-fb:106 nack
a=rtpmap:105 rtx/90000
a=fmtp:105 apt=106
a=ssrc-group:FID 283969055 283969056
a=ssrc:283969055 cname:FFmpeg
"""
CANDIDATES = [("127.0.0.1", 50000)]


def answer_for(text: str):  # noqa: ANN201
    offer = parse_publish_offer(text)
    return build_publish_answer(offer, choose_tracks(offer), ice_ufrag="uf", ice_pwd="pw" * 12,
                                fingerprint="sha-256 " + ":".join(["AB"] * 32),
                                candidates=CANDIDATES)


def test_ffmpeg_offer_passive_makes_us_the_dtls_client() -> None:
    ans = answer_for(FFMPEG_OFFER)
    assert ans.dtls_role == "client"
    assert "a=setup:active" in ans.sdp and "a=setup:passive" not in ans.sdp
    assert ans.tracks["video"].codec.payload_type == 106
    assert ans.tracks["video"].rtx_payload_type == 105
    assert ans.tracks["audio"].codec.rtpmap() == "opus/48000/2"
    assert "a=group:BUNDLE 0 1" in ans.sdp and "a=ice-lite" in ans.sdp
    assert "m=video 50000 UDP/TLS/RTP/SAVPF 106 105" in ans.sdp
    assert "a=fmtp:105 apt=106" in ans.sdp and "a=rtcp-fb:106 goog-remb" in ans.sdp
    assert ans.sdp.count("a=recvonly") == 2
    assert "a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host" in ans.sdp
    tracks = source_tracks(ans.tracks)
    assert tracks["video"].profile_level_id == "42000d"


def test_ffmpeg_dtls_active_and_browser_actpass_make_us_the_server() -> None:
    active = FFMPEG_OFFER.replace("a=setup:passive", "a=setup:active")
    assert answer_for(active).dtls_role == "server"
    browser = CHROMIUM_OFFER.replace("a=recvonly", "a=sendonly")
    ans = answer_for(browser)
    assert ans.dtls_role == "server" and "a=setup:passive" in ans.sdp
    # Chromium offers several H264 profiles: the most decodable one (constrained baseline)
    video = ans.tracks["video"].codec
    assert video.param("profile-level-id") == "42e01f" and video.payload_type == 109
    assert ans.tracks["video"].rtx_payload_type == 114


def test_vp8_when_no_h264_and_errors_name_what_is_missing() -> None:
    vp8 = FFMPEG_OFFER.replace("a=rtpmap:106 H264/90000", "a=rtpmap:106 VP8/90000")
    assert answer_for(vp8).tracks["video"].codec.name == "VP8"
    with pytest.raises(SdpError, match=r"no usable video codec: offered H265/90000"):
        answer_for(FFMPEG_OFFER.replace("a=rtpmap:106 H264/90000", "a=rtpmap:106 H265/90000"))
    with pytest.raises(SdpError, match=r"no usable audio codec: offered PCMA/8000"):
        answer_for(FFMPEG_OFFER.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 PCMA/8000"))
    with pytest.raises(SdpError, match="sends no audio or video"):
        answer_for(FFMPEG_OFFER.replace("a=sendonly", "a=recvonly"))


@st.composite
def mangled(draw: st.DrawFn, seed: str) -> str:
    lines = seed.replace("\r\n", "\n").split("\n")
    for _ in range(draw(st.integers(1, 5))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "garble"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        else:
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))] + draw(st.text(max_size=12))
    return "\r\n".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mangled(FFMPEG_OFFER), mangled(CHROMIUM_OFFER.replace("a=recvonly",
                                                                         "a=sendonly"))))
def test_hostile_offers_raise_only_sdp_errors(text: str) -> None:
    try:
        answer_for(text)
    except SdpError:
        pass
