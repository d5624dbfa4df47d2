"""rtp.stun: ICE-lite Binding handling and the RFC 7983 demux helpers."""

from __future__ import annotations

import pytest
from aioice import stun as aioice_stun

from rtp.errors import ParseError
from rtp.stun import (
    IceLite,
    build_binding_request,
    check_binding_response,
    is_dtls,
    is_rtcp,
    is_rtp_or_rtcp,
    is_stun,
    peek_username,
)

SERVER_UFRAG = "srvU"
SERVER_PWD = "server-password-0123456789"
CLIENT_UFRAG = "cliU"
ADDR = ("127.0.0.1", 50000)

# RFC 5769 section 2.1: sample request, USERNAME "evtj:h6vY", password below.
RFC5769_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74"
    "002400046e0001ff80290008932ff9b151263b36000600096576746a3a6836765920202000080014"
    "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf"
)
RFC5769_PWD = "VOkJxbRl1RmTxUk/WvJxBt"


def make_agent() -> IceLite:
    return IceLite(SERVER_UFRAG, SERVER_PWD, CLIENT_UFRAG)


def test_demux_helpers() -> None:
    assert is_stun(b"\x00\x01") and is_stun(b"\x03") and not is_stun(b"\x04") and not is_stun(b"")
    assert is_dtls(b"\x16\xfe\xfd") and is_dtls(b"\x14") and is_dtls(b"\x3f")
    assert not is_dtls(b"\x13") and not is_dtls(b"\x40") and not is_dtls(b"")
    assert is_rtp_or_rtcp(b"\x80\x60") and is_rtp_or_rtcp(b"\xbf") and not is_rtp_or_rtcp(b"\xc0")
    assert is_rtcp(b"\x80\xc8") and is_rtcp(b"\x81\xcd") and is_rtcp(b"\x80\xdf")
    assert not is_rtcp(b"\x80\x60") and not is_rtcp(b"\x80\xe0") and not is_rtcp(b"\x80")
    assert not is_rtcp(b"\x16\xc8")


def test_valid_request_answered_and_nominated() -> None:
    agent = make_agent()
    tid = b"A" * 12
    request = build_binding_request(CLIENT_UFRAG, SERVER_UFRAG, SERVER_PWD, transaction_id=tid)
    assert peek_username(request) == f"{SERVER_UFRAG}:{CLIENT_UFRAG}"
    response = agent.handle(request, ADDR, now=10.0)
    assert response is not None
    assert check_binding_response(response, tid, SERVER_PWD) == ADDR
    assert agent.nominated == ADDR
    assert agent.last_valid == 10.0
    assert not agent.dropped

    # The response is what aioice (a real ICE agent) accepts: MI then FINGERPRINT.
    msg = aioice_stun.parse_message(response)
    assert msg.message_class == aioice_stun.Class.RESPONSE
    assert msg.check_message_integrity(SERVER_PWD.encode())
    assert list(msg.attributes)[-2:] == ["MESSAGE-INTEGRITY", "FINGERPRINT"]
    assert msg.attributes["XOR-MAPPED-ADDRESS"] == ADDR


def test_use_candidate_selects_latest_address() -> None:
    agent = make_agent()
    other = ("127.0.0.1", 50001)
    req = build_binding_request(CLIENT_UFRAG, SERVER_UFRAG, SERVER_PWD, use_candidate=False)
    assert agent.handle(req, ADDR, 1.0) is not None
    assert agent.nominated is None and agent.last_valid == 1.0
    req = build_binding_request(CLIENT_UFRAG, SERVER_UFRAG, SERVER_PWD, use_candidate=True)
    assert agent.handle(req, ADDR, 2.0) is not None
    assert agent.nominated == ADDR
    req = build_binding_request(CLIENT_UFRAG, SERVER_UFRAG, SERVER_PWD, use_candidate=True)
    assert agent.handle(req, other, 3.0) is not None
    assert agent.nominated == other
    # A later request without USE-CANDIDATE keeps the nomination but refreshes consent.
    req = build_binding_request(CLIENT_UFRAG, SERVER_UFRAG, SERVER_PWD, use_candidate=False)
    assert agent.handle(req, ADDR, 4.0) is not None
    assert agent.nominated == other and agent.last_valid == 4.0


def test_ipv6_address() -> None:
    agent = make_agent()
    tid = b"B" * 12
    req = build_binding_request(CLIENT_UFRAG, SERVER_UFRAG, SERVER_PWD, transaction_id=tid)
    resp = agent.handle(req, ("::1", 4242), 0.0)
    assert resp is not None
    assert check_binding_response(resp, tid, SERVER_PWD) == ("::1", 4242)


def test_wrong_integrity_and_username_dropped() -> None:
    agent = make_agent()
    bad_pwd = build_binding_request(CLIENT_UFRAG, SERVER_UFRAG, "not-the-password")
    assert agent.handle(bad_pwd, ADDR, 1.0) is None
    bad_user = build_binding_request("someoneelse", SERVER_UFRAG, SERVER_PWD)
    assert agent.handle(bad_user, ADDR, 1.0) is None
    wrong_server = build_binding_request(CLIENT_UFRAG, "otherSrv", SERVER_PWD)
    assert agent.handle(wrong_server, ADDR, 1.0) is None
    assert agent.dropped == {"integrity": 1, "username": 2}
    assert agent.nominated is None and agent.last_valid is None


def test_non_request_dropped() -> None:
    agent = make_agent()
    resp = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.RESPONSE)
    resp.add_message_integrity(SERVER_PWD.encode())
    assert agent.handle(bytes(resp), ADDR, 0.0) is None
    ind = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.INDICATION)
    ind.add_fingerprint()
    assert agent.handle(bytes(ind), ADDR, 0.0) is None
    assert agent.dropped["not-request"] == 2
    assert peek_username(bytes(resp)) is None


def test_request_without_integrity_dropped() -> None:
    agent = make_agent()
    msg = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.REQUEST)
    msg.attributes["USERNAME"] = f"{SERVER_UFRAG}:{CLIENT_UFRAG}"
    msg.add_fingerprint()
    assert agent.handle(bytes(msg), ADDR, 0.0) is None
    assert agent.dropped["integrity"] == 1


def test_rfc5769_sample_request() -> None:
    assert peek_username(RFC5769_REQUEST) == "evtj:h6vY"
    agent = IceLite("evtj", RFC5769_PWD, "h6vY")
    resp = agent.handle(RFC5769_REQUEST, ("192.0.2.1", 32853), 0.0)
    assert resp is not None
    tid = RFC5769_REQUEST[8:20]
    assert check_binding_response(resp, tid, RFC5769_PWD) == ("192.0.2.1", 32853)


def test_tampered_request() -> None:
    agent = make_agent()
    req = bytearray(build_binding_request(CLIENT_UFRAG, SERVER_UFRAG, SERVER_PWD))
    req[-1] ^= 1  # FINGERPRINT no longer matches
    with pytest.raises(ParseError) as info:
        agent.handle(bytes(req), ADDR, 0.0)
    assert info.value.reason == "stun-fingerprint"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x00\x01\x00\x00", b"\x00\x01\x00\x00" + b"\x00" * 16,  # bad cookie
     b"\x00\x01\x00\x04\x21\x12\xa4\x42" + b"\x00" * 12,  # length says 4, no body
     b"\x00\x01\x00\x04\x21\x12\xa4\x42" + b"\x00" * 12 + b"\x00\x06\x00\x09",  # overrun
     b"\xc0\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12],
)
def test_garbage_raises_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        peek_username(data)
    with pytest.raises(ParseError):
        make_agent().handle(data, ADDR, 0.0)


def test_check_binding_response_rejects() -> None:
    agent = make_agent()
    tid = b"C" * 12
    req = build_binding_request(CLIENT_UFRAG, SERVER_UFRAG, SERVER_PWD, transaction_id=tid)
    resp = agent.handle(req, ADDR, 0.0)
    assert resp is not None
    with pytest.raises(ParseError, match="stun-transaction"):
        check_binding_response(resp, b"D" * 12, SERVER_PWD)
    with pytest.raises(ParseError, match="stun-integrity"):
        check_binding_response(resp, tid, "wrong")
    with pytest.raises(ParseError, match="stun-not-response"):
        check_binding_response(req, tid, SERVER_PWD)


def test_an_ice_restart_keeps_consent_and_path_until_new_checks() -> None:
    from rtp.stun import IceLite, build_binding_request

    agent = IceLite("srv1", "p" * 22, "cli1")
    assert agent.handle(build_binding_request("cli1", "srv1", "p" * 22), ("10.0.0.2", 5000),
                        now=10.0) is not None
    assert agent.last_nominating and agent.nominated == ("10.0.0.2", 5000)
    new = agent.restarted("srv2", "q" * 22, "cli2")
    assert (new.nominated, new.last_valid) == (("10.0.0.2", 5000), 10.0)
    # the old credentials no longer pass; the new ones nominate the new address
    assert new.handle(build_binding_request("cli1", "srv1", "p" * 22), ("10.0.0.3", 6000),
                      now=11.0) is None
    assert new.handle(build_binding_request("cli2", "srv2", "q" * 22, use_candidate=False),
                      ("10.0.0.3", 6000), now=12.0) is not None
    assert not new.last_nominating and new.nominated == ("10.0.0.2", 5000)
    assert new.handle(build_binding_request("cli2", "srv2", "q" * 22), ("10.0.0.3", 6000),
                      now=13.0) is not None
    assert new.nominated == ("10.0.0.3", 6000) and new.last_valid == 13.0
