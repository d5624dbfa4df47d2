"""Property tests: no parser lets anything but its typed error escape on hostile input.

Covers STUN (peek_username, IceLite.handle), SDP (parse_offer, build_answer,
parse_source_sdp), DTLS (DtlsEndpoint.receive), SRTP (unprotect), RTCP (parse_rtcp),
H264/VP8 payload helpers and RTP (rtp.packet.parse_rtp).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtp.dtls import Certificate, DtlsEndpoint, SrtpKeys
from rtp.errors import DtlsError, ParseError, SdpError
from rtp.h264 import (
    build_stap_a,
    has_parameter_sets,
    is_keyframe,
    nal_types,
    parse_sprop,
    profile_level_id_from_sps,
)
from rtp.packet import parse_rtp
from rtp.rtcp import Nack, parse_rtcp
from rtp.sdp import build_answer, parse_offer, parse_source_sdp
from rtp.srtp import SrtpSession
from rtp.stun import IceLite, build_binding_request, peek_username
from rtp.vp8 import descriptor_size
from rtp.vp8 import is_keyframe as vp8_is_keyframe
from tests.helpers.fuzz import mutated_bytes
from tests.helpers.sdp_samples import CHROMIUM_OFFER, FFMPEG_SDP

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


FEW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


ADDR = ("127.0.0.1", 5000)


VALID_REQUEST = build_binding_request("cli", "srv", "srvpassword-0123456789", transaction_id=b"T" * 12)


CERTS = (Certificate.generate(), Certificate.generate())


@st.composite
def mutated_sdp(draw: st.DrawFn, seed: str) -> str:
    """``seed`` with lines dropped, duplicated, swapped or garbled."""
    lines = seed.replace("\r\n", "\n").split("\n")
    for _ in range(draw(st.integers(1, 5))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "garble", "insert", "cut"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "garble":
            line = lines[i]
            j = draw(st.integers(0, len(line)))
            lines[i] = line[:j] + draw(st.text(max_size=6)) + line[j + 1 :]
        elif op == "insert":
            lines.insert(i, draw(st.text(max_size=30)))
        else:
            line = lines[i]
            lines[i] = line[: draw(st.integers(0, len(line)))]
    sep = draw(st.sampled_from(["\r\n", "\n"]))
    return sep.join(lines)


def _stun_roundtrip(data: bytes) -> None:
    try:
        peek_username(data)
    except ParseError:
        pass
    agent = IceLite("srv", "srvpassword-0123456789", "cli")
    try:
        agent.handle(data, ADDR, 0.0)
    except ParseError:
        pass


@FUZZ
@given(st.binary(max_size=200))
def test_stun_random(data: bytes) -> None:
    _stun_roundtrip(data)


@FUZZ
@given(st.binary(max_size=100).map(lambda tail: b"\x00\x01" + len(tail).to_bytes(2, "big")
                                    + b"\x21\x12\xa4\x42" + b"x" * 12 + tail))
def test_stun_random_with_valid_header(data: bytes) -> None:
    _stun_roundtrip(data)


@FUZZ
@given(mutated_bytes(VALID_REQUEST))
def test_stun_mutated_request(data: bytes) -> None:
    _stun_roundtrip(data)


def _answer_if_parsed(text: str) -> None:
    try:
        offer = parse_offer(text)
    except SdpError:
        return
    try:
        build_answer(
            offer,
            ice_ufrag="srvU",
            ice_pwd="serverpassword0123456789",
            fingerprint=":".join(["AB"] * 32),
            candidates=[("127.0.0.1", 4000)],
            tracks=parse_source_sdp(FFMPEG_SDP),
        )
    except SdpError:  # includes NoCommonCodec
        pass


@FUZZ
@given(st.text(max_size=300))
def test_offer_random_text(text: str) -> None:
    _answer_if_parsed(text)


@FUZZ
@given(st.text(max_size=200).map(lambda t: "v=0\n" + t))
def test_offer_random_after_version(text: str) -> None:
    _answer_if_parsed(text)


@FUZZ
@given(mutated_sdp(CHROMIUM_OFFER))
def test_offer_mutated(text: str) -> None:
    _answer_if_parsed(text)


@FUZZ
@given(st.one_of(st.text(max_size=200), mutated_sdp(FFMPEG_SDP)))
def test_source_sdp(text: str) -> None:
    try:
        parse_source_sdp(text)
    except SdpError:
        pass


def _client_hello() -> bytes:
    client = DtlsEndpoint(CERTS[1], CERTS[0].fingerprint, role="client")
    client.start(0.0)
    return client.datagrams_to_send()[0]


DTLS_SEED = _client_hello()  # a real ClientHello, to mutate


@FEW
@given(st.one_of(st.binary(max_size=300), mutated_bytes(DTLS_SEED),
                 st.binary(max_size=200).map(lambda b: b"\x16\xfe\xfd" + b)))
def test_dtls_receive(data: bytes) -> None:
    server = DtlsEndpoint(CERTS[0], CERTS[1].fingerprint, role="server")
    try:
        server.receive(data, 0.0)
        server.receive(data, 0.1)
        server.handle_timeout(5.0)
    except DtlsError:
        assert server.closed
    server.datagrams_to_send()


SRTP_KEYS = SrtpKeys(7, os.urandom(16), os.urandom(12), os.urandom(16), os.urandom(12))


@FEW
@given(st.binary(max_size=300))
def test_srtp_unprotect(data: bytes) -> None:
    session = SrtpSession(SRTP_KEYS)
    for func in (session.unprotect, session.unprotect_rtcp):
        try:
            func(data)
        except ParseError:
            pass


RTP_SEED = b"\x80\x60\x00\x01" + b"\x00\x00\x0b\xb8" + b"\x00\x00\x12\x34" + b"\x65" + b"x" * 20


RTCP_SEED = (
    b"\x80\xc8\x00\x06" + b"\x00\x00\x12\x34" + b"\x01" * 20  # SR
    + b"\x81\xcd\x00\x03" + b"\x00\x00\x00\x01" + b"\x00\x00\x12\x34" + b"\x00\x05\x00\x01"  # NACK
    + b"\x81\xce\x00\x02" + b"\x00\x00\x00\x01" + b"\x00\x00\x12\x34"  # PLI
)


STAP_A_SEED = build_stap_a([b"\x67\x42\xc0\x1e\xda", b"\x68\xce\x3c\x80", b"\x65\x88\x84"])


FU_A_SEED = b"\x7c\x85" + b"\x00" * 20


@FEW
@given(st.one_of(st.binary(max_size=100), mutated_bytes(RTP_SEED)))
def test_rtp_parser(data: bytes) -> None:
    try:
        parse_rtp(data)
    except ParseError:
        pass


@FUZZ
@given(st.one_of(
    st.binary(max_size=120),
    mutated_bytes(RTCP_SEED),
    # a valid first header followed by random bytes: reaches the per-type parsers
    st.tuples(st.sampled_from([200, 201, 202, 203, 204, 205, 206]), st.integers(0, 31),
              st.binary(max_size=80)).map(
        lambda t: bytes([0x80 | t[1], t[0]]) + (len(t[2]) // 4).to_bytes(2, "big") + t[2]),
))
def test_rtcp_parser(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except ParseError:
        return
    for packet in packets:  # what parses is well-formed enough to act on
        if isinstance(packet, Nack):
            assert all(0 <= s <= 0xFFFF for s in packet.lost)


@FUZZ
@given(st.one_of(st.binary(max_size=60), mutated_bytes(STAP_A_SEED), mutated_bytes(FU_A_SEED)))
def test_h264_payload_helpers(data: bytes) -> None:
    types = nal_types(data)  # never raises, whatever the payload
    assert all(0 <= t <= 31 for t in types)
    assert isinstance(is_keyframe(data), bool)
    assert isinstance(has_parameter_sets(data), bool)
    try:
        assert len(profile_level_id_from_sps(data)) == 6
    except ParseError:
        pass


@FUZZ
@given(st.one_of(st.text(max_size=60), st.text(alphabet="ABCDEFGHabcdefgh0123456789+/=, ",
                                                max_size=60)))
def test_h264_parse_sprop(value: str) -> None:
    try:
        units = parse_sprop(value)
    except ParseError:
        return
    assert units and all(units)


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=5))
def test_h264_stap_a_round_trip(nalus: list[bytes]) -> None:
    payload = build_stap_a(nalus)
    assert nal_types(payload) == [n[0] & 0x1F for n in nalus]


@FUZZ
@given(st.one_of(st.binary(max_size=30), mutated_bytes(b"\x90\xf0\x85\x05\x01\x02\x00\x9d\x01\x2a")))
def test_vp8_payload_helpers(data: bytes) -> None:
    assert isinstance(vp8_is_keyframe(data), bool)
    try:
        assert 1 <= descriptor_size(data) <= len(data)
    except ParseError:
        pass


