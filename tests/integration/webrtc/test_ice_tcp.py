"""ICE-TCP (issue 21) over real sockets on 127.0.0.1: a Forwarder with its TCP port, the
minimal viewers of ``bench/ice_tcp.py`` (ICE controlling, DTLS client, SRTP; RFC 4571 frames
over TCP or plain UDP) and a synthetic H264-like source.
"""

from __future__ import annotations

import socket

import pytest
import trio

from bench.ice_tcp import VIDEO_SDP, MiniViewer, answer_candidates, produce
from rtp.fanout import STREAMS
from rtp.forwarder import Forwarder
from rtp.packet import parse_rtp
from rtp.rtcp import build_nack, build_pli
from rtp.stun import build_binding_request
from rtp.tcp import TcpLimits
from rtp.tcp_framing import encode


async def start(nursery: trio.Nursery, rate: float = 200, **kw: object) -> Forwarder:
    fwd = Forwarder(tcp_host="127.0.0.1", tcp_port=0, **kw)  # type: ignore[arg-type]
    await nursery.start(fwd.run)
    source = await nursery.start(fwd.open_source, "cam", ("video",))
    source.set_sdp(VIDEO_SDP)
    nursery.start_soon(produce, fwd, "cam", rate)
    return fwd


async def viewer(fwd: Forwarder, transport: str) -> MiniViewer:
    v = MiniViewer(transport)
    peer, answer = await fwd.add_peer("cam", v.offer())
    v.peer_id = peer.id
    v.accept(answer.sdp)
    with trio.fail_after(10):
        await v.establish()
    return v


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_viewer_plays_over_ice_tcp_with_rtcp(workers: int) -> None:
    """Over ICE-TCP: media, a PLI, a NACK repair — with the C fan-out inline on the trio
    thread (1 worker) and on 2 worker threads."""
    async with trio.open_nursery() as nursery:
        fwd = await start(nursery, fanout_workers=workers)
        v = await viewer(fwd, "tcp")
        with trio.fail_after(5):
            packets = await v.receive_media(60)
        assert {parse_rtp(p).payload_type for p in packets} == {102}
        peer = fwd.source("cam").peers[v.peer_id]
        stats = peer.stats()
        assert stats["transport"] == "tcp" and stats["state"] == "connected", stats
        track = peer.out["video"]
        assert not track.native_send and track.fd == -1  # never on the mux socket's sendmmsg
        assert track not in fwd.source("cam").fanout["video"]
        # with the C fan-out, the viewer's worker writes the connection (framing, queue, gate)
        assert peer.native is STREAMS and peer.tcp is not None and peer.tcp.native is STREAMS
        assert (peer in fwd.source("cam").listeners) is not STREAMS
        # SRTCP over the framed stream: a PLI is counted, a NACK repaired
        ssrc = track.ssrc
        seq = parse_rtp(packets[-1]).sequence
        assert v.srtp is not None
        await v.send(v.srtp.protect_rtcp(build_pli(1, ssrc)))
        await v.send(v.srtp.protect_rtcp(build_nack(1, ssrc, [seq])))
        with trio.fail_after(5):
            while peer.plis < 1 or track.retransmitted < 1:
                await v.receive_media(1)
        assert fwd.tcp is not None and fwd.tcp.bound == 1
        nursery.cancel_scope.cancel()


async def test_answer_announces_passive_tcp_below_udp() -> None:
    async with trio.open_nursery() as nursery:
        fwd = await start(nursery)
        _, answer = await fwd.add_peer("cam", MiniViewer().offer())
        cands = answer_candidates(answer.sdp)
        assert [c[0] for c in cands] == ["udp", "tcp"]
        assert cands[1][2] == fwd.tcp.port  # type: ignore[union-attr]
        lines = [x for x in answer.sdp.splitlines() if x.startswith("a=candidate:")]
        assert lines[1].endswith("typ host tcptype passive")
        assert int(lines[1].split()[3]) < int(lines[0].split()[3])
        nursery.cancel_scope.cancel()


async def test_abuse_of_the_tcp_port_does_not_disturb_a_udp_viewer() -> None:
    """Garbage, a slowloris, unknown ufrags and a connection flood on the TCP port while a
    UDP viewer watches: every abusive connection is closed (counted), the UDP viewer
    misses no packet."""
    limits = TcpLimits(max_connections=20, max_per_ip=8, stun_timeout=0.5)
    async with trio.open_nursery() as nursery:
        fwd = await start(nursery, tcp_limits=limits)
        udp = await viewer(fwd, "udp")
        tcp = fwd.tcp
        assert tcp is not None
        port = tcp.port
        got: list[int] = []

        async def watch() -> None:
            while True:
                for p in await udp.receive_media(10):
                    got.append(parse_rtp(p).sequence)

        nursery.start_soon(watch)
        await trio.sleep(0.3)
        before = len(got)
        socks = []

        def connect() -> socket.socket:
            s = socket.create_connection(("127.0.0.1", port))
            socks.append(s)
            return s

        connect().sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 50)  # garbage: "GE" = 18245
        connect().sendall(encode(b"\x16\xfe\xfd" + bytes(60)))  # DTLS before any STUN
        connect().sendall(b"\x00\x40\x00")  # slowloris: a partial frame, then nothing
        connect().sendall(encode(build_binding_request("abcd", "nope", "x" * 22)))
        connect().sendall(b"\xff\xff" + bytes(100))  # a frame larger than the limit
        for _ in range(30):  # a connection flood from one address
            try:
                connect()
            except OSError:
                pass
        await trio.sleep(1.5)
        for s in socks:
            s.close()
        await trio.sleep(0.3)
        assert tcp.closed["not-stun"] >= 1, tcp.stats()
        assert tcp.closed["stun-timeout"] >= 1, tcp.stats()
        assert tcp.closed["unknown-ufrag"] == 1, tcp.stats()
        assert tcp.closed["tcp-frame-too-large"] == 2, tcp.stats()
        assert tcp.refused["limit-per-ip"] >= 20, tcp.stats()
        assert len(tcp.connections) == 0
        seqs = got[before:]
        assert len(seqs) > 300, len(seqs)  # 200 packets/s for ~1.8 s
        gaps = sum(((b - a) & 0xFFFF) != 1 for a, b in zip(seqs, seqs[1:], strict=False))
        assert gaps == 0
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_slow_tcp_viewer_is_bounded_and_skips_to_a_keyframe(workers: int) -> None:
    """A TCP viewer that stops reading: its queue stays within its byte limit, media is
    skipped (counted) and resumes at a keyframe when it reads again; a UDP viewer beside
    it misses nothing."""
    limits = TcpLimits(queue_bytes=64 * 1024)
    async with trio.open_nursery() as nursery:
        fwd = await start(nursery, rate=1000, tcp_limits=limits, fanout_workers=workers)
        fast = await viewer(fwd, "udp")
        slow = MiniViewer("tcp")
        peer, answer = await fwd.add_peer("cam", slow.offer())
        slow.accept(answer.sdp)
        assert slow.sock is None
        slow.sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window
        await slow.sock.connect(slow.server)
        slow.open = _noop  # type: ignore[method-assign]
        with trio.fail_after(10):
            await slow.establish()
        conn = peer.tcp
        assert conn is not None
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        seqs: list[int] = []

        async def watch() -> None:
            while True:
                for p in await fast.receive_media(10):
                    seqs.append(parse_rtp(p).sequence)

        nursery.start_soon(watch)
        await trio.sleep(3.0)  # the slow viewer reads nothing
        st = conn.stats()
        assert st["native"] is STREAMS
        assert 0 < st["peak"] <= limits.queue_bytes, st  # type: ignore[operator]
        assert st["skips"] >= 1 and st["skipped"] > 100, st  # type: ignore[operator]
        assert peer.stats()["send_dropped"] > 100
        assert fwd.tcp.dropped["skipped-to-keyframe"] == conn.stats()["skipped"]  # type: ignore[union-attr]
        assert fwd.tcp.dropped["queue-full"] >= 1  # type: ignore[union-attr]
        gaps = sum(((b - a) & 0xFFFF) != 1 for a, b in zip(seqs, seqs[1:], strict=False))
        assert gaps == 0 and len(seqs) > 2000
        # it reads again: the stream continues, from a keyframe
        with trio.fail_after(10):
            while conn.skipping:
                await slow.receive_media(20)
            resumed = False
            while not resumed:
                for p in await slow.receive_media(20):
                    hdr = parse_rtp(p)
                    resumed = resumed or p[hdr.header_size] & 0x1F == 5
        nursery.cancel_scope.cancel()


async def _noop() -> None:
    return None


async def test_tcp_connection_limits() -> None:
    limits = TcpLimits(max_connections=3, max_per_ip=2)
    async with trio.open_nursery() as nursery:
        fwd = await start(nursery, tcp_limits=limits)
        tcp = fwd.tcp
        assert tcp is not None
        socks = [socket.create_connection(("127.0.0.1", tcp.port)) for _ in range(4)]
        await trio.sleep(0.3)
        assert len(tcp.connections) == 2 and tcp.refused["limit-per-ip"] == 2
        for s in socks:
            s.close()
        await trio.sleep(0.3)
        assert len(tcp.connections) == 0 and tcp.closed["eof"] == 2
        nursery.cancel_scope.cancel()


async def test_ice_restart_keeps_the_session_and_moves_the_path() -> None:
    """A UDP viewer restarts ICE and comes back over TCP from another socket: the old ufrag
    is refused, the new one nominates the new path; SSRC, DTLS/SRTP and counters stay."""
    async with trio.open_nursery() as nursery:
        fwd = await start(nursery)
        v = await viewer(fwd, "udp")
        with trio.fail_after(5):
            first = await v.receive_media(20)
        peer = fwd.source("cam").peers[v.peer_id]
        sent_before = peer.stats()["packets_sent"]
        old_ufrag = peer.ice.local_ufrag
        frag = fwd.restart_ice(peer, "newfrag1")
        new_ufrag = next(x[12:] for x in frag.splitlines() if x.startswith("a=ice-ufrag:"))
        new_pwd = next(x[10:] for x in frag.splitlines() if x.startswith("a=ice-pwd:"))
        assert new_ufrag != old_ufrag and "tcptype passive" in frag
        assert fwd.mux.peer_for_ufrag(old_ufrag) is None
        assert fwd.mux.peer_for_ufrag(new_ufrag) is peer
        # the same viewer, now over TCP with the new credentials
        moved = MiniViewer("tcp")
        moved.ufrag, moved.r_ufrag, moved.r_pwd = "newfrag1", new_ufrag, new_pwd
        moved.server = ("127.0.0.1", fwd.tcp.port)  # type: ignore[union-attr]
        moved.srtp = v.srtp
        await moved.open()
        native = peer._viewer
        with trio.fail_after(5):
            await moved.check()
            later = await moved.receive_media(20)
        assert peer.stats()["transport"] == "tcp" and peer.ice_restarts == 1
        assert parse_rtp(later[0]).ssrc == parse_rtp(first[0]).ssrc
        assert peer.stats()["packets_sent"] > sent_before
        assert fwd.source("cam").peers[v.peer_id] is peer
        # with the C fan-out the same C viewer (same SRTP session) now writes the connection
        assert (peer._viewer is native and native is not None) is STREAMS
        # and back to UDP (another restart): the same viewer again, the stream continues
        frag = fwd.restart_ice(peer, "newfrag2")
        back = MiniViewer("udp")
        back.ufrag = "newfrag2"
        back.r_ufrag = next(x[12:] for x in frag.splitlines() if x.startswith("a=ice-ufrag:"))
        back.r_pwd = next(x[10:] for x in frag.splitlines() if x.startswith("a=ice-pwd:"))
        back.server = v.server
        back.srtp = v.srtp
        await back.open()
        with trio.fail_after(5):
            await back.check()
            again = await back.receive_media(20)
        assert peer.stats()["transport"] == "udp" and peer.ice_restarts == 2
        assert parse_rtp(again[-1]).ssrc == parse_rtp(first[0]).ssrc
        assert (peer._viewer is native and native is not None) is STREAMS
        assert not any(c.native for c in peer.tcp_paths.values())  # detached from TCP
        nursery.cancel_scope.cancel()


async def test_consent_expires_over_tcp_and_the_connection_closes() -> None:
    """A TCP viewer that stops its consent checks (RFC 7675) is closed with reason
    ``consent-expired``; its connection is closed with it, a checking one stays."""
    async with trio.open_nursery() as nursery:
        fwd = await start(nursery, consent_timeout=1.0)
        silent = await viewer(fwd, "tcp")
        alive = await viewer(fwd, "tcp")
        peers = fwd.source("cam").peers
        silent_peer, alive_peer = peers[silent.peer_id], peers[alive.peer_id]
        with trio.move_on_after(2.0):
            while True:
                await alive.check()
                await trio.sleep(0.3)
        assert silent_peer.closed and silent_peer.close_reason == "consent-expired"
        assert not alive_peer.closed
        tcp = fwd.tcp
        assert tcp is not None and tcp.closed["peer closed"] == 1 and len(tcp.connections) == 1
        nursery.cancel_scope.cancel()


async def test_public_and_nat_ips_get_tcp_candidates_too() -> None:
    async with trio.open_nursery() as nursery:
        fwd = await start(nursery, advertise=["203.0.113.7", "198.51.100.2"])
        _, answer = await fwd.add_peer("cam", MiniViewer().offer())
        port = fwd.tcp.port  # type: ignore[union-attr]
        assert [c for c in answer_candidates(answer.sdp) if c[0] == "tcp"] == [
            ("tcp", "203.0.113.7", port), ("tcp", "198.51.100.2", port)]
        nursery.cancel_scope.cancel()


async def test_a_tcp_viewer_is_told_when_the_forwarder_stops() -> None:
    """Cancelling the forwarder closes its Peers before their connections (the mux or the
    listener's ``before_close``, whichever ends first): an ICE-TCP viewer gets its SRTCP
    BYE over the connection, then the connection ends."""
    from rtp.rtcp import Bye, parse_rtcp

    with trio.CancelScope() as outer:
        async with trio.open_nursery() as nursery:
            fwd = await start(nursery)
            v = await viewer(fwd, "tcp")
            await v.receive_media(10)
            nursery.cancel_scope.cancel()
    assert not outer.cancelled_caught
    byes = []
    with trio.fail_after(5):
        try:
            while True:
                data = await v.receive()
                if 128 <= data[0] <= 191 and 192 <= data[1] <= 223:
                    assert v.srtp is not None
                    byes += [p for p in parse_rtcp(v.srtp.unprotect_rtcp(data))
                             if isinstance(p, Bye)]
        except EOFError:
            pass
    assert byes, "no RTCP BYE over the TCP connection"


async def _stalled_tcp_viewer(fwd: Forwarder) -> tuple[MiniViewer, object]:
    """A TCP viewer whose client stops reading once connected (a 4 KiB receive window)."""
    slow = MiniViewer("tcp")
    peer, answer = await fwd.add_peer("cam", slow.offer())
    slow.accept(answer.sdp)
    slow.sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await slow.sock.connect(slow.server)
    slow.open = _noop  # type: ignore[method-assign]
    with trio.fail_after(10):
        await slow.establish()
    assert peer.tcp is not None
    peer.tcp.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return slow, peer


async def test_a_stalled_tcp_viewer_closed_still_gets_its_goodbye_after_its_media() -> None:
    """A TCP viewer whose client reads nothing has bytes waiting in its queue (the C
    viewer's with the native fan-out) when it is closed: what was queued is handed back,
    the SRTCP BYE follows it, and the client reads well-framed, decryptable media in order,
    then the BYE, then the end of the connection (closed once the goodbye is written)."""
    from rtp.rtcp import Bye, parse_rtcp

    async with trio.open_nursery() as nursery:
        fwd = await start(nursery, rate=1000)
        slow, peer = await _stalled_tcp_viewer(fwd)
        assert peer.native is STREAMS  # type: ignore[attr-defined]
        conn = peer.tcp  # type: ignore[attr-defined]
        with trio.fail_after(5):
            while conn.queued == 0:
                await trio.sleep(0.05)
        fwd.close_peer(peer.id)  # type: ignore[attr-defined]
        assert not conn.native  # the goodbye waits (at most FINISH_LINGER) for the kernel
        seqs: list[int] = []
        byes = []
        with trio.fail_after(10):
            try:
                while True:
                    data = await slow.receive()  # FrameDecoder: a broken frame raises
                    assert slow.srtp is not None
                    if not 128 <= data[0] <= 191:
                        continue  # the DTLS close_notify (after the BYE)
                    if 192 <= data[1] <= 223:
                        byes += [p for p in parse_rtcp(slow.srtp.unprotect_rtcp(data))
                                 if isinstance(p, Bye)]
                    else:
                        assert not byes, "media after the BYE"
                        seqs.append(parse_rtp(slow.srtp.unprotect(data)).sequence)
            except EOFError:
                pass
        assert conn.closed and conn.close_reason == "peer closed"
        assert byes and seqs  # what the kernel had of the media, then the goodbye
        assert all(((b - a) & 0xFFFF) < 0x8000 for a, b in zip(seqs, seqs[1:], strict=False))
        nursery.cancel_scope.cancel()


async def test_a_forwarder_with_stalled_tcp_viewers_stops_within_100_ms() -> None:
    """Three TCP viewers that read nothing, their queues full, a Source at 1000 packets/s:
    cancelling the forwarder ends everything (workers, connections) within 100 ms."""
    with trio.CancelScope() as outer:
        async with trio.open_nursery() as nursery:
            fwd = await start(nursery, rate=1000)
            for _ in range(3):
                await _stalled_tcp_viewer(fwd)
            await trio.sleep(0.5)
            assert fwd.tcp is not None and all(c.queued > 0 for c in fwd.tcp.connections)
            start_at = trio.current_time()
            nursery.cancel_scope.cancel()
    took = trio.current_time() - start_at
    assert not outer.cancelled_caught
    assert took < 0.1, took
