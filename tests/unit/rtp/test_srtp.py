"""rtp.srtp: SRTP sessions keyed from a DTLS handshake, both profiles."""

from __future__ import annotations

import os
import struct

import pytest
from pylibsrtp import Policy

from rtp.dtls import SrtpKeys
from rtp.errors import ParseError
from rtp.srtp import SrtpSession

PROFILES = [
    (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
    (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
]


def mirror(profile: int, key_len: int, salt_len: int) -> tuple[SrtpKeys, SrtpKeys]:
    ck, sk = os.urandom(key_len), os.urandom(key_len)
    cs, ss = os.urandom(salt_len), os.urandom(salt_len)
    server = SrtpKeys(profile, tx_key=sk, tx_salt=ss, rx_key=ck, rx_salt=cs)
    client = SrtpKeys(profile, tx_key=ck, tx_salt=cs, rx_key=sk, rx_salt=ss)
    return server, client


def rtp(seq: int, payload: bytes = b"\x65" + b"x" * 100, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, ssrc) + payload


def sr(ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 1, 2, 3, 4, 5)


@pytest.mark.parametrize(("profile", "key_len", "salt_len"), PROFILES)
def test_roundtrip(profile: int, key_len: int, salt_len: int) -> None:
    server_keys, client_keys = mirror(profile, key_len, salt_len)
    server, client = SrtpSession(server_keys), SrtpSession(client_keys)
    for seq in range(1, 5):
        packet = rtp(seq)
        protected = server.protect(packet)
        assert protected != packet and len(protected) > len(packet)
        assert client.unprotect(protected) == packet
    report = sr()
    assert server.unprotect_rtcp(client.protect_rtcp(report)) == report
    assert client.unprotect_rtcp(server.protect_rtcp(report)) == report


@pytest.mark.parametrize(("profile", "key_len", "salt_len"), PROFILES)
def test_tampered_rejected(profile: int, key_len: int, salt_len: int) -> None:
    server_keys, client_keys = mirror(profile, key_len, salt_len)
    server, client = SrtpSession(server_keys), SrtpSession(client_keys)
    protected = bytearray(server.protect(rtp(7)))
    protected[20] ^= 0x01
    with pytest.raises(ParseError) as info:
        client.unprotect(bytes(protected))
    assert info.value.reason == "srtp-auth"
    srtcp = bytearray(client.protect_rtcp(sr()))
    srtcp[10] ^= 0x80
    with pytest.raises(ParseError):
        server.unprotect_rtcp(bytes(srtcp))


def test_wrong_keys_rejected() -> None:
    server_keys, _ = mirror(*PROFILES[0])
    _, other_client = mirror(*PROFILES[0])
    with pytest.raises(ParseError, match="srtp-auth"):
        SrtpSession(other_client).unprotect(SrtpSession(server_keys).protect(rtp(1)))


def test_repeat_tx_allowed_and_replay_rejected() -> None:
    server_keys, client_keys = mirror(*PROFILES[1])
    server, client = SrtpSession(server_keys), SrtpSession(client_keys)
    first = server.protect(rtp(10))
    again = server.protect(rtp(10))  # NACK resend of the same sequence number
    assert client.unprotect(first) == rtp(10)
    with pytest.raises(ParseError) as info:
        client.unprotect(again)
    assert info.value.reason == "srtp-replay"


def test_short_and_oversize() -> None:
    server_keys, client_keys = mirror(*PROFILES[0])
    server, client = SrtpSession(server_keys), SrtpSession(client_keys)
    for junk in (b"", b"\x80", b"\x80\x60\x00\x01"):
        with pytest.raises(ParseError):
            client.unprotect(junk)
        with pytest.raises(ParseError):
            client.unprotect_rtcp(junk)
    with pytest.raises(ParseError, match="srtp-protect"):
        server.protect(rtp(1, payload=b"x" * 1400))
    with pytest.raises(ParseError):
        client.unprotect(b"\x80" * 2000)
    with pytest.raises(ParseError):
        client.unprotect_rtcp(b"\x80\xc8" * 1000)
    assert client.unprotect(server.protect(rtp(2, payload=b"x" * 1344))) == rtp(
        2, payload=b"x" * 1344
    )
