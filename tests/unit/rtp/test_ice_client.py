"""rtp.ice_client: the controlling agent's checks against our own ICE-lite agent — nominating
requests with the remote's credentials, retransmission until the first success, consent
refresh afterwards, consent failure, and foreign/forged responses ignored."""

from __future__ import annotations

from rtp.ice_client import CONSENT_INTERVAL, MAX_RTO, RTO, IceClient
from rtp.stun import IceLite

ADDR = ("127.0.0.1", 40000)


def pair(now: float = 0.0, **kw: float) -> tuple[IceClient, IceLite]:
    lite = IceLite("srv", "s" * 24, "edge")
    return IceClient("edge", "srv", "s" * 24, now=now, **kw), lite


def test_checks_nominate_and_retransmit_until_answered() -> None:
    client, lite = pair()
    sent = client.poll(0.0)
    assert len(sent) == 1 and client.poll(0.0) == []
    resp = lite.handle(sent[0], ADDR, 0.0)
    assert resp is not None and lite.last_nominating and lite.nominated == ADDR
    # unanswered: retransmitted with a doubling interval, capped
    times = []
    t = 0.0
    for _ in range(8):
        t = client.next_timeout()
        assert client.poll(t)
        times.append(t)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert abs(gaps[0] - RTO) < 1e-9 and abs(gaps[1] - 2 * RTO) < 1e-9
    assert max(gaps) <= MAX_RTO + 1e-9
    assert not client.connected
    # an answer to any outstanding request connects
    last = client.poll(client.next_timeout())[0]
    assert client.handle_response(lite.handle(last, ADDR, t) or b"", t)
    assert client.connected and client.mapped == ADDR


def test_consent_refresh_and_failure() -> None:
    client, lite = pair(consent_timeout=30.0)
    req = client.poll(0.0)[0]
    assert client.handle_response(lite.handle(req, ADDR, 0.0) or b"", 0.0)
    nxt = client.next_timeout()
    assert 0.8 * CONSENT_INTERVAL <= nxt <= 1.2 * CONSENT_INTERVAL
    # refreshed consent keeps it alive
    req = client.poll(nxt)[0]
    assert client.handle_response(lite.handle(req, ADDR, nxt) or b"", nxt)
    assert not client.failed(nxt + 29)
    # nothing answered for the consent timeout: failed
    t = nxt
    while t < nxt + 31:
        t = client.next_timeout()
        client.poll(t)
    assert client.failed(nxt + 31)


def test_foreign_and_forged_responses_are_ignored() -> None:
    client, lite = pair()
    req = client.poll(0.0)[0]
    # a response to someone else's request
    other, _ = pair()
    assert not client.handle_response(lite.handle(other.poll(0.0)[0], ADDR, 0.0) or b"", 0.0)
    assert client.dropped["unknown-transaction"] == 1
    # a response to our request keyed with another password (not the server's)
    from aioice import stun
    txid = next(iter(client._pending))
    forged = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=txid)
    forged.attributes["XOR-MAPPED-ADDRESS"] = ADDR
    forged.add_message_integrity(b"x" * 24)
    assert not client.handle_response(bytes(forged), 0.0)
    assert client.dropped["stun-integrity"] == 1
    assert not client.handle_response(b"\x01\x01\x00\x00garbage", 0.0)
    assert not client.connected
    assert client.handle_response(lite.handle(req, ADDR, 0.0) or b"", 0.0)
