"""rtp.dtls: in-memory DTLS-SRTP handshakes between a client and a server endpoint."""

from __future__ import annotations

import time

import pytest
from pylibsrtp import Policy

from rtp.dtls import MTU, Certificate, DtlsEndpoint, SrtpKeys
from rtp.errors import DtlsError


@pytest.fixture(scope="module")
def certs() -> tuple[Certificate, Certificate]:
    return Certificate.generate(), Certificate.generate()


def shuttle(client: DtlsEndpoint, server: DtlsEndpoint, now: float, rounds: int = 10) -> None:
    """Deliver datagrams both ways until nothing moves."""
    for _ in range(rounds):
        moved = False
        for d in client.datagrams_to_send():
            moved = True
            server.receive(d, now)
        for d in server.datagrams_to_send():
            moved = True
            client.receive(d, now)
        if not moved:
            return


def pair(certs: tuple[Certificate, Certificate]) -> tuple[DtlsEndpoint, DtlsEndpoint]:
    server_cert, client_cert = certs
    server = DtlsEndpoint(server_cert, client_cert.fingerprint, role="server")
    client = DtlsEndpoint(client_cert, server_cert.fingerprint, role="client")
    return client, server


def test_certificate_fingerprint(certs: tuple[Certificate, Certificate]) -> None:
    fp = certs[0].fingerprint
    parts = fp.split(":")
    assert len(parts) == 32 and all(len(p) == 2 and p == p.upper() for p in parts)
    assert certs[0].fingerprint != certs[1].fingerprint
    # The context is built up front and reused for many connections.
    assert certs[0].context("server") is certs[0].context("server")


def test_handshake_mirror_keys(certs: tuple[Certificate, Certificate]) -> None:
    client, server = pair(certs)
    assert server.next_timeout() is None
    client.start(0.0)
    assert client.next_timeout() is not None
    shuttle(client, server, 0.0)
    assert client.handshake_complete and server.handshake_complete
    assert server.srtp_profile == b"SRTP_AEAD_AES_128_GCM"
    sk, ck = server.srtp_keys(), client.srtp_keys()
    assert isinstance(sk, SrtpKeys)
    assert sk.profile == ck.profile == Policy.SRTP_PROFILE_AEAD_AES_128_GCM
    assert (sk.tx_key, sk.tx_salt) == (ck.rx_key, ck.rx_salt)
    assert (sk.rx_key, sk.rx_salt) == (ck.tx_key, ck.tx_salt)
    assert len(sk.tx_key) == 16 and len(sk.tx_salt) == 12
    assert sk.tx_key != sk.rx_key
    assert server.next_timeout() is None


def test_datagrams_respect_mtu(certs: tuple[Certificate, Certificate]) -> None:
    client, server = pair(certs)
    client.start(0.0)
    sizes = []
    for _ in range(6):
        for d in client.datagrams_to_send():
            sizes.append(len(d))
            assert d[0] in range(20, 64)
            server.receive(d, 0.0)
        for d in server.datagrams_to_send():
            sizes.append(len(d))
            assert d[0] in range(20, 64)
            client.receive(d, 0.0)
    assert server.handshake_complete
    assert sizes and max(sizes) <= MTU


def test_retransmission_recovers_lost_flight(certs: tuple[Certificate, Certificate]) -> None:
    client, server = pair(certs)
    t0 = time.monotonic()
    client.start(t0)
    client.datagrams_to_send()  # the ClientHello is lost
    deadline = client.next_timeout()
    assert deadline is not None and 0.1 < deadline - t0 <= 2.0
    # OpenSSL also checks its own clock: wait for real (the first timer is ~1 s).
    time.sleep(max(0.0, deadline - time.monotonic()) + 0.02)
    now = time.monotonic()
    client.handle_timeout(now)
    resent = client.datagrams_to_send()
    assert resent, "ClientHello was not retransmitted"
    for d in resent:
        server.receive(d, now)
    shuttle(client, server, now)
    assert client.handshake_complete and server.handshake_complete


def test_lost_final_server_flight_recovered_by_client_retransmit(
    certs: tuple[Certificate, Certificate],
) -> None:
    client, server = pair(certs)
    t0 = time.monotonic()
    client.start(t0)
    for _ in range(2):  # CH -> SH..; client flight 3 -> server
        for d in client.datagrams_to_send():
            server.receive(d, t0)
        if server.handshake_complete:
            break
        for d in server.datagrams_to_send():
            client.receive(d, t0)
    assert server.handshake_complete
    server.datagrams_to_send()  # server's CCS+Finished lost
    assert not client.handshake_complete
    deadline = client.next_timeout()
    assert deadline is not None
    time.sleep(max(0.0, deadline - time.monotonic()) + 0.02)
    now = time.monotonic()
    client.handle_timeout(now)
    shuttle(client, server, now)
    assert client.handshake_complete
    assert client.srtp_keys().rx_key == server.srtp_keys().tx_key


def test_wrong_fingerprint_is_fatal(certs: tuple[Certificate, Certificate]) -> None:
    server_cert, client_cert = certs
    other = Certificate.generate()
    server = DtlsEndpoint(server_cert, other.fingerprint, role="server")
    client = DtlsEndpoint(client_cert, server_cert.fingerprint, role="client")
    client.start(0.0)
    with pytest.raises(DtlsError):
        shuttle(client, server, 0.0)
    assert server.closed and not server.handshake_complete
    with pytest.raises(DtlsError):
        server.srtp_keys()
    # Dead endpoint: further input is ignored.
    server.receive(b"\x16\xfe\xfd" + b"\x00" * 20, 1.0)
    assert server.next_timeout() is None


def test_client_rejects_wrong_server_fingerprint(certs: tuple[Certificate, Certificate]) -> None:
    server_cert, client_cert = certs
    server = DtlsEndpoint(server_cert, client_cert.fingerprint, role="server")
    client = DtlsEndpoint(client_cert, Certificate.generate().fingerprint, role="client")
    client.start(0.0)
    with pytest.raises(DtlsError):
        shuttle(client, server, 0.0)
    assert client.closed


def test_fingerprint_formats_accepted(certs: tuple[Certificate, Certificate]) -> None:
    server_cert, client_cert = certs
    server = DtlsEndpoint(server_cert, "sha-256 " + client_cert.fingerprint.lower(), "server")
    client = DtlsEndpoint(client_cert, server_cert.fingerprint, "client")
    client.start(0.0)
    shuttle(client, server, 0.0)
    assert server.handshake_complete


def test_garbage_does_not_crash(certs: tuple[Certificate, Certificate]) -> None:
    junks = [b"", b"\x16", b"\x16\xfe\xfd\x00\x00", b"\x17" * 50, bytes(range(256)),
             b"\x16\xfe\xfd" + b"\xff" * 200,
             b"\x16\xfe\xfd" + b"\x00" * 8 + b"\x00\x10" + b"\x01" * 16]
    for junk in junks:
        _, server = pair(certs)
        try:
            server.receive(junk, 0.0)
        except DtlsError:
            assert server.closed  # a malformed handshake record is fatal, typed
    # Records OpenSSL discards leave the endpoint usable: a real handshake completes.
    client, server = pair(certs)
    for junk in junks[:6]:
        server.receive(junk, 0.0)
    client.start(0.0)
    shuttle(client, server, 0.0)
    assert server.handshake_complete


def test_close_notify(certs: tuple[Certificate, Certificate]) -> None:
    client, server = pair(certs)
    client.start(0.0)
    shuttle(client, server, 0.0)
    client.close()
    assert client.closed
    for d in client.datagrams_to_send():
        server.receive(d, 1.0)
    assert server.closed and server.close_reason == "close_notify"


def test_fatal_alert_from_peer(certs: tuple[Certificate, Certificate]) -> None:
    client, server = pair(certs)
    client.start(0.0)
    shuttle(client, server, 0.0)
    # A plaintext fatal alert (epoch 0) after the handshake is dropped by OpenSSL or fatal.
    alert = b"\x15\xfe\xfd" + b"\x00" * 8 + b"\x00\x02" + b"\x02\x28"
    try:
        server.receive(alert, 1.0)
    except DtlsError:
        assert server.closed


def test_bad_role(certs: tuple[Certificate, Certificate]) -> None:
    with pytest.raises(ValueError):
        DtlsEndpoint(certs[0], certs[1].fingerprint, role="peer")  # type: ignore[arg-type]


# --- end to end against aiortc (a real ICE/DTLS/SRTP stack), over 127.0.0.1 -------------------


def test_interop_with_aiortc() -> None:
    """aiortc (controlling, DTLS client) connects to our sans-IO ICE-lite + DTLS server.

    Proves: aiortc accepts our STUN responses and nominates; the DTLS handshake completes
    with fingerprints checked both ways; aiortc decrypts our SRTP (packetsReceived > 0) and
    we decrypt its SRTCP (keys laid out correctly in both directions).
    """
    import asyncio
    import struct

    import aioice.ice
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from rtp.errors import ParseError
    from rtp.sdp import Codec, SourceTrack, build_answer, parse_offer
    from rtp.srtp import SrtpSession
    from rtp.stun import IceLite, is_dtls, is_rtcp, is_stun

    async def run() -> dict[str, int]:
        loop = asyncio.get_running_loop()
        cert = Certificate.generate()
        state: dict = {"rtcp": 0, "srtp": None, "addr": None}

        class Server(asyncio.DatagramProtocol):
            def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
                self.transport = transport

            def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
                addr = (addr[0], addr[1])
                if is_stun(data):
                    try:
                        resp = state["ice"].handle(data, addr, loop.time())
                    except ParseError:
                        return
                    if resp:
                        self.transport.sendto(resp, addr)
                elif is_dtls(data):
                    dtls: DtlsEndpoint = state["dtls"]
                    dtls.receive(data, loop.time())
                    for d in dtls.datagrams_to_send():
                        self.transport.sendto(d, addr)
                    if dtls.handshake_complete and state["srtp"] is None:
                        state["srtp"] = SrtpSession(dtls.srtp_keys())
                        state["addr"] = addr
                elif is_rtcp(data) and state["srtp"] is not None:
                    state["srtp"].unprotect_rtcp(data)  # raises if keys were wrong
                    state["rtcp"] += 1

        transport, proto = await loop.create_datagram_endpoint(
            Server, local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        original = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
        pc = RTCPeerConnection()
        try:
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            offer = parse_offer(pc.localDescription.sdp)
            state["ice"] = IceLite("srvU", "serverpassword0123456789", offer.ice_ufrag)
            state["dtls"] = DtlsEndpoint(cert, offer.fingerprint, role="server")
            answer = build_answer(
                offer,
                ice_ufrag="srvU",
                ice_pwd="serverpassword0123456789",
                fingerprint=cert.fingerprint,
                candidates=[("127.0.0.1", port)],
                tracks={"video": SourceTrack("video", Codec(100, "VP8", 90000))},
            )
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
            track = answer.tracks["video"]
            for _ in range(100):
                if state["srtp"] is not None and pc.connectionState == "connected":
                    break
                await asyncio.sleep(0.05)
            assert state["srtp"] is not None, "DTLS handshake did not complete"
            assert state["ice"].nominated is not None
            # Send a few VP8 packets (keyframe descriptor + junk payload).
            for seq in range(1, 31):
                rtp = struct.pack(
                    "!BBHII", 0x80, 0x80 | track.payload_type, seq, seq * 3000, track.ssrc
                ) + b"\x10\x00\x00\x9d\x01\x2a" + b"\x00" * 50
                transport.sendto(state["srtp"].protect(rtp), state["ice"].nominated)
                await asyncio.sleep(0.01)
            received = 0
            for _ in range(60):
                stats = await pc.getReceivers()[0].getStats()
                received = max(
                    (getattr(s, "packetsReceived", 0) for s in stats.values()), default=0
                )
                if received and state["rtcp"]:
                    break
                await asyncio.sleep(0.05)
            return {"received": received, "rtcp": state["rtcp"]}
        finally:
            await pc.close()
            transport.close()
            aioice.ice.get_host_addresses = original

    result = asyncio.run(run())
    assert result["received"] > 0, "aiortc did not accept our SRTP"
    assert result["rtcp"] > 0, "no SRTCP from aiortc could be decrypted"


def test_release_frees_the_connection_and_keeps_the_keys(
    certs: tuple[Certificate, Certificate],
) -> None:
    client, server = pair(certs)
    client.start(0.0)
    shuttle(client, server, 0.0)
    assert server.handshake_complete
    keys = server.srtp_keys()
    profile = server.srtp_profile
    server.release()
    assert server.released and server.srtp_keys() == keys and server.srtp_profile == profile
    server.receive(b"\x17\xfe\xfd" + b"\x00" * 30, 0.0)  # ignored, no error
    assert server.datagrams_to_send() == []  # release sends nothing
    server.close()  # the close_notify made at release time goes out now
    assert server.closed
    sent = server.datagrams_to_send()
    assert sent and sent[0][0] == 21  # an alert record
    assert not client.closed
    for d in sent:
        client.receive(d, 1.0)
    assert client.closed and client.close_reason == "close_notify"
    server.close()  # idempotent: nothing more
    assert server.datagrams_to_send() == []


def test_close_notify_after_release_follows_a_retransmitted_flight(
    certs: tuple[Certificate, Certificate],
) -> None:
    """The client's Finished arrives twice (its retransmission), the server answers it
    again; the alert made at release still carries the next record number."""
    client, server = pair(certs)
    client.start(0.0)
    flights: list[bytes] = []
    for _ in range(10):
        out = client.datagrams_to_send()
        flights.extend(out)
        for d in out:
            server.receive(d, 0.0)
        back = server.datagrams_to_send()
        for d in back:
            client.receive(d, 0.0)
        if not out and not back:
            break
    assert server.handshake_complete
    for d in flights[-1:]:  # a duplicate of the client's last flight
        server.receive(d, 0.1)
    for d in server.datagrams_to_send():
        client.receive(d, 0.1)
    server.release()
    server.close()
    for d in server.datagrams_to_send():
        client.receive(d, 0.2)
    assert client.closed and client.close_reason == "close_notify"
