"""The native fan-out's workers under load (issue 18): storms of joins, leaves, closes,
replays and NACK resends while 2-3 worker threads send; a Source that stops; viewers whose
transport is not the UDP mux socket; the same scenario through the Python fan-out and the
native one, counter for counter.

Everything is counted at real UDP receivers on 127.0.0.1: what a viewer's socket received
must be exactly what its counters say, nothing may arrive after ``close()`` returned, and a
viewer's live packets arrive in order (their sequence numbers, in the clear SRTP header).
"""

from __future__ import annotations

import os
import random
import socket
import time
from typing import Any

import pylibsrtp
import pytest
import trio

import rtp.source
from rtp import fanout
from rtp.dtls import Certificate, SrtpKeys
from rtp.packet import build_rtp, parse_rtp
from rtp.peer import Peer
from rtp.rtcp import build_nack, build_pli
from rtp.sdp import Codec, NegotiatedTrack
from rtp.source import Source
from rtp.srtp import SrtpSession, new_tx_context, stream_roc
from tests.helpers.peer_fakes import DoneDtls, FakeMux

pytestmark = pytest.mark.skipif(not fanout.NATIVE, reason="needs the native fan-out "
                                "(covered by test_fanout's build check)")

GCM = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
CM = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80


def keys(profile: int = GCM) -> SrtpKeys:
    salt = 12 if profile == GCM else 14
    return SrtpKeys(profile, os.urandom(16), os.urandom(salt), os.urandom(16), os.urandom(salt))


def threads_left(tids: set[int]) -> set[int]:
    """The threads among ``tids`` still in ``/proc/self/task`` after waiting up to 1 s.

    ``pthread_join`` returns when the kernel clears the thread's tid futex, which happens a
    moment *before* the exiting task is unhashed from ``/proc`` (longer under ASan), so a
    joined thread's entry may linger for microseconds; a thread that was not joined — still
    running or blocked — stays, and is reported."""
    deadline = time.monotonic() + 1.0
    while True:
        left = {t for t in tids if os.path.exists(f"/proc/self/task/{t}")}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.005)


def receiver() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return s


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(2048))
        except BlockingIOError:
            return out


class Sink:
    """One viewer's receiving socket and everything it got."""

    def __init__(self) -> None:
        self.sock = receiver()
        self.got: list[bytes] = []

    def read(self) -> int:
        new = drain(self.sock)
        self.got.extend(new)
        return len(new)


def rtp_packet(seq: int, size: int = 1000, ssrc: int = 0xABC) -> bytes:
    return build_rtp(96, seq & 0xFFFF, seq * 3000, ssrc, os.urandom(size - 12), marker=True)


@pytest.mark.parametrize("workers", [2, 3])
def test_join_leave_close_replay_nack_storm_while_workers_send(workers: int) -> None:
    """Random joins, leaves, closes, re-keyed new viewers, bursts (media) and NACK repairs
    (retransmissions on a second slot) interleaved with live packets, from the trio thread's
    side, while the workers send. Afterwards: every receiver got exactly packets +
    retransmitted of its viewer, in order, nothing after close; sessions decrypt."""
    rng = random.Random(18)
    eng = fanout.open_engine(workers, ring_slots=512)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    viewers: dict[int, tuple[Any, Sink, SrtpKeys]] = {}
    closed: list[tuple[Any, Sink, int]] = []  # viewer, sink, datagrams when closed
    table = eng.table()
    next_id = 0
    try:
        def new_viewer() -> None:
            nonlocal next_id
            k = keys(rng.choice([GCM, CM]))
            sink = Sink()
            v = eng.viewer(new_tx_context(k))
            v.set_address(sender.fileno(), sink.sock.getsockname())
            v.set_track(0, 100, 0x5000 + next_id, rng.getrandbits(16), rng.getrandbits(32))
            v.join(0, table)
            viewers[next_id] = (v, sink, k)
            next_id += 1

        for _ in range(24):
            new_viewer()
        seq = 0
        for step in range(1500):
            table.fan_out(rtp_packet(seq), seq, seq * 3000)
            seq += 1
            action = rng.random()
            if action < 0.03 and viewers:
                vid = rng.choice(list(viewers))
                v, sink, _ = viewers.pop(vid)
                v.close()  # nothing may arrive after this returns
                sink.read()
                closed.append((v, sink, len(sink.got)))
            elif action < 0.06:
                new_viewer()
            elif action < 0.09 and viewers:
                v, _, _ = viewers[rng.choice(list(viewers))]
                v.leave(0)  # off the live fan-out for a while (a replay), then back
                for i in range(rng.randint(1, 40)):  # the replay: new packets, in order
                    v.send(0, rtp_packet(60000 + i, 800, 0x7777))
                v.join(0, table)
            elif action < 0.15 and viewers:
                v, _, _ = viewers[rng.choice(list(viewers))]
                for i in range(rng.randint(1, 5)):  # NACK repairs on slot 1 (RTX stream)
                    v.send(1, rtp_packet(50000 + i, 500, 0x9999), fanout_kind_rtx())
            if step % 50 == 0:
                for _, sink, _ in viewers.values():
                    sink.read()
                time.sleep(0.001)
        eng.sync()
        for v, sink, k in viewers.values():
            sink.read()
            packets, size, dropped, _ = v.counters(0)
            retransmitted = v.counters(1)[3] + v.counters(0)[3]
            assert len(sink.got) == packets + retransmitted, (len(sink.got), packets, dropped)
            assert packets + dropped > 0  # offered live packets (a full ring drops, counted)
            headers = [parse_rtp(d) for d in sink.got]
            own = [h.sequence for h in headers if h.payload_type == 100]  # live, rewritten
            assert own or not packets
            assert all(0 < (b - a) & 0xFFFF < 0x8000 for a, b in zip(own, own[1:], strict=False))
            for burst_ssrc in (0x7777, 0x9999):  # each burst in order too
                burst = [h.sequence for h in headers if h.ssrc == burst_ssrc]
                assert all(b > a or b == burst[0] for a, b in zip(burst, burst[1:], strict=False))
            media_bytes = sum(len(d) for d in sink.got if parse_rtp(d).ssrc not in (0x9999,))
            assert media_bytes == size, "bytes counted = bytes received (live + bursts)"
            receiver_session = SrtpSession(SrtpKeys(k.profile, k.rx_key, k.rx_salt,
                                                    k.tx_key, k.tx_salt))
            for d in sink.got[:5] + sink.got[-5:]:
                receiver_session.unprotect(d)  # raises if a worker garbled a packet
        for v, sink, count in closed:
            sink.read()
            assert len(sink.got) == count, "a packet arrived after close() returned"
            packets, _, _, retransmitted = v.counters(0)
            assert count == packets + retransmitted + v.counters(1)[3]
        assert all(w["queued"] == 0 for w in eng.stats())
    finally:
        for v, sink, _ in viewers.values():
            v.close()
            sink.sock.close()
        for _, sink, _ in closed:
            sink.sock.close()
        eng.close()
        sender.close()


def fanout_kind_rtx() -> int:
    from rtp import _fanout  # type: ignore[attr-defined]

    return int(_fanout.KIND_RTX)


def test_closing_the_engine_joins_its_threads_and_frees_open_viewers() -> None:
    """Engine.close with viewers still open and packets queued: returns quickly (threads
    joined), the viewers are closed (their sessions freed: later calls are harmless), no
    thread is left."""
    import threading

    before = threading.active_count()
    with_tids = fanout.open_engine(2)
    tids = {w["tid"] for w in with_tids.stats()}
    assert all(os.path.exists(f"/proc/self/task/{t}") for t in tids)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = Sink()
    table = with_tids.table()
    vs = []
    for i in range(30):
        v = with_tids.viewer(new_tx_context(keys()))
        v.set_address(sender.fileno(), sink.sock.getsockname())
        v.set_track(0, 96, i, 0, 0)
        v.join(0, table)
        vs.append(v)
    for seq in range(2000):
        table.fan_out(rtp_packet(seq), seq, seq)
    started = time.monotonic()
    with_tids.close()
    took = time.monotonic() - started
    assert took < 0.1, f"Engine.close took {took * 1000:.0f} ms"
    assert not threads_left(tids), "a thread is left"
    assert threading.active_count() == before
    assert all(v.closed for v in vs)
    sink.read()
    count = len(sink.got)
    vs[0].send(0, rtp_packet(1))
    vs[0].set_track(0, 96, 1, 0, 0)
    vs[0].close()
    table.fan_out(rtp_packet(5), 5, 5)
    time.sleep(0.02)
    assert sink.read() == 0 and len(sink.got) == count
    sender.close()
    sink.sock.close()


# -- through Source and Peer ------------------------------------------------------------------

VIDEO_SDP = """v=0\r
o=- 0 0 IN IP4 127.0.0.1\r
s=No Name\r
c=IN IP4 127.0.0.1\r
t=0 0\r
m=video 40002 RTP/AVP 96\r
a=rtpmap:96 H264/90000\r
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkAoD2wEQAAAwABAAADADIPFi5I,aMuMsg==; profile-level-id=42C01E\r
"""


CERT = Certificate.generate()


def make_peer(source: Source, mux: FakeMux, k: SrtpKeys, addr: tuple[str, int], n: int) -> Peer:
    codec = Codec(102, "H264", 90000)
    track = NegotiatedTrack("video", "0", 102, 0x1000 + n, codec, 103, 0x2000 + n)
    peer = Peer(peer_id=f"p{n}", source=source, mux=mux,  # type: ignore[arg-type]
                certificate=CERT, remote_fingerprint="AB" + ":AB" * 31, ice_ufrag=f"u{n}",
                ice_pwd="p" * 22, remote_ufrag="r", tracks={"video": track}, cname="c")
    peer.dtls = DoneDtls(k)  # type: ignore[assignment]
    source.attach(peer)
    peer.addr = addr
    return peer


def feed(source: Source, first: int, count: int, now: float) -> None:
    for i in range(first, first + count):
        nal = 0x65 if i % 64 == 0 else 0x41
        source.on_datagram("video", build_rtp(96, 7000 + i, 90 * 40 * i, 0xABC,
                                              bytes([nal]) + bytes(900), marker=True),
                           now + i * 0.001)


async def scenario(workers: int) -> tuple[list[list[bytes]], list[dict[str, object]]]:
    """Three viewers: one joins before the first keyframe, two join later (GOP burst), one
    asks for a keyframe (PLI: replay), one NACKs (RTX), one leaves early. Returns what each
    viewer's socket received and each viewer's final stats."""
    random.seed(1818)  # the Peers' random offsets: the same in every run
    ks = [SrtpKeys(CM, bytes([i]) * 16, bytes([i]) * 14, bytes([9]) * 16, bytes([9]) * 14)
          for i in range(3)]
    sinks = [Sink() for _ in ks]
    mux = FakeMux()
    source = Source("cam", ("video",), workers=workers)
    stats: list[dict[str, object]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(source.run)
        source.set_sdp(VIDEO_SDP)
        assert (source.engine is not None) == bool(workers)
        now = trio.current_time()
        peers = [make_peer(source, mux, k, s.sock.getsockname(), i)
                 for i, (k, s) in enumerate(zip(ks, sinks, strict=True))]
        peers[0]._connected(now)
        feed(source, 0, 120, now)
        await trio.sleep(0.05)
        for p in peers[1:]:
            p._connected(now)  # a GOP to send first: the burst, live packets queued
            p._wake()
        await trio.sleep(0.05)
        feed(source, 120, 30, now)
        await trio.sleep(0.05)
        viewer_rx = SrtpSession(SrtpKeys(CM, ks[1].rx_key, ks[1].rx_salt, ks[1].tx_key,
                                         ks[1].tx_salt))
        peers[1].handle_rtcp(viewer_rx.protect_rtcp(build_pli(1, 0x1001)),
                             sinks[1].sock.getsockname(), now)
        viewer_rx2 = SrtpSession(SrtpKeys(CM, ks[2].rx_key, ks[2].rx_salt, ks[2].tx_key,
                                          ks[2].tx_salt))
        if source.engine is not None:
            source.engine.sync()  # what the workers were given is out (a slow run, ASan)
        sinks[2].read()
        assert len(sinks[2].got) >= 13
        lost = [parse_rtp(viewer_rx2.unprotect(d)).sequence for d in sinks[2].got[10:13]]
        peers[2].handle_rtcp(viewer_rx2.protect_rtcp(build_nack(1, 0x1002, lost)),
                             sinks[2].sock.getsockname(), now)
        feed(source, 150, 40, now)
        await trio.sleep(0.1)
        if source.engine is not None:
            source.engine.sync()  # viewer 0 leaves after all of it, in every run
        peers[0].close("left")
        feed(source, 190, 20, now)
        await trio.sleep(0.1)
        if source.engine is not None:
            source.engine.sync()
        for s in sinks:
            s.read()
        stats = [p.stats() for p in peers]
        nursery.cancel_scope.cancel()
    mux.sock.close()
    for s in sinks:
        s.sock.close()
    return [s.got for s in sinks], stats


COUNTERS = ("packets_sent", "bytes_sent", "retransmitted", "send_dropped", "keyframe_replays",
            "replayed_packets", "rtx_sent", "dropped", "tracks")


async def test_the_same_scenario_gives_the_same_bytes_and_counters_in_both(
        monkeypatch: pytest.MonkeyPatch) -> None:
    native_inline = await scenario(1)
    native_threads = await scenario(2)
    monkeypatch.setattr(rtp.source, "open_engine", lambda workers=None: None)
    python = await scenario(0)
    got_py, stats_py = python
    assert all(len(g) > 100 for g in got_py)
    assert stats_py[1]["keyframe_replays"] == 1 and stats_py[2]["rtx_sent"] == 3
    for got, stats in (native_inline, native_threads):
        for i in range(3):
            assert [stats[i][c] for c in COUNTERS] == [stats_py[i][c] for c in COUNTERS], i
            rtp_got = [d for d in got[i] if not 192 <= d[1] <= 223]  # not SRTCP (wall time)
            assert rtp_got == [d for d in got_py[i] if not 192 <= d[1] <= 223], \
                f"viewer {i}: other bytes than the Python path's"
            counted = stats[i]["packets_sent"] + stats[i]["retransmitted"]  # type: ignore[operator]
            assert len(rtp_got) == counted


class FakeTcpConnection:
    """An ICE-TCP connection as the Peer sees it (``rtp.tcp.TcpConnection``): ``send`` frames
    (RFC 4571) and records; here it also delivers to a UDP sink so the test can decrypt."""

    def __init__(self, sock: socket.socket, sink: tuple[str, int]) -> None:
        self.sock, self.sink, self.addr = sock, sink, sink
        self.framed: list[bytes] = []

    def send(self, data: bytes) -> bool:
        self.framed.append(len(data).to_bytes(2, "big") + data)
        self.sock.sendto(data, self.sink)
        return True

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.send(data)

    def admit(self, video: bool, keyframe: bool) -> bool:
        return True  # never slow here (rtp.tcp_framing.KeyframeGate has its own tests)

    def finish(self) -> None: ...


async def test_a_viewer_whose_transport_is_not_the_mux_socket_takes_the_python_path() -> None:
    """The transport contract: a viewer whose path is a connection C cannot write (``Peer.tcp``
    without ``native_capable``; a real ICE-TCP connection is written by the C viewer, see
    ``test_fanout_stream.py``), or whose address has no mux socket (``fileno_for`` -1), stays
    off the native fan-out; its
    packets are protected on the trio thread and handed to its own sender — while a UDP
    viewer of the same Source is native."""
    k = keys(CM)
    nosock, udp = FakeMux(tcp=True), FakeMux()
    sinks = [Sink(), Sink(), Sink()]
    source = Source("cam", ("video",), workers=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(source.run)
        source.set_sdp(VIDEO_SDP)
        now = trio.current_time()
        over_tcp = make_peer(source, udp, k, sinks[0].sock.getsockname(), 0)
        conn = FakeTcpConnection(udp.sock, sinks[0].sock.getsockname())
        over_tcp.tcp = conn  # type: ignore[assignment]
        no_mux_socket = make_peer(source, nosock, k, sinks[1].sock.getsockname(), 1)
        native = make_peer(source, udp, k, sinks[2].sock.getsockname(), 2)
        for p in (over_tcp, no_mux_socket, native):
            p._connected(now)
        assert not over_tcp.native and not no_mux_socket.native and native.native
        track = over_tcp.out["video"]
        assert not track.native_send and track.fd == -1
        assert track not in source.fanout["video"] and over_tcp in source.listeners
        assert no_mux_socket.out["video"] in source.fanout["video"]
        feed(source, 0, 60, now)
        await trio.sleep(0.05)
        source.engine.sync()
        for s in sinks:
            s.read()
        framed_rtp = [f for f in conn.framed if not 192 <= f[3] <= 223]  # not its SRTCP
        assert len(framed_rtp) == over_tcp.stats()["packets_sent"] == 61  # + injected STAP-A
        assert len(nosock.framed) == no_mux_socket.stats()["packets_sent"] == 61
        assert [sum(1 for d in s.got if not 192 <= d[1] <= 223) for s in sinks] == [61] * 3
        rx = SrtpSession(SrtpKeys(CM, k.rx_key, k.rx_salt, k.tx_key, k.tx_salt))
        assert parse_rtp(rx.unprotect(framed_rtp[5][2:])).ssrc == 0x1000
        nursery.cancel_scope.cancel()
    for m in (nosock, udp):
        m.sock.close()
    for s in sinks:
        s.sock.close()


async def test_a_native_viewer_moving_to_ice_tcp_keeps_its_srtp_stream() -> None:
    """ICE moves a native (C) viewer to an ICE-TCP connection after its sequence numbers
    wrapped (SRTP rollover counter 1): it leaves the native fan-out, the Python path goes on
    with the same packet index (ROC carried into the Peer's session), so one receiver
    session decrypts every packet, before and after the move, and the counters add up."""
    k = keys(CM)
    udp = FakeMux()
    sink = Sink()
    source = Source("cam", ("video",), workers=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(source.run)
        source.set_sdp(VIDEO_SDP)
        now = trio.current_time()
        peer = make_peer(source, udp, k, sink.sock.getsockname(), 0)
        peer.out["video"].seq_delta = 65536 - 40 - 7000  # wraps 40 packets in
        peer._connected(now)
        assert peer.native
        feed(source, 0, 100, now)
        await trio.sleep(0.05)
        source.engine.sync()
        assert stream_roc(peer._viewer_ctx, 0x1000) == 1
        conn = FakeTcpConnection(udp.sock, sink.sock.getsockname())
        peer.tcp = conn  # type: ignore[assignment]
        peer._leave_native()
        peer._steady()
        assert not peer.native and peer in source.listeners
        feed(source, 100, 50, now + 1)
        await trio.sleep(0.05)
        sink.read()
        rx = SrtpSession(SrtpKeys(CM, k.rx_key, k.rx_salt, k.tx_key, k.tx_salt))
        media = [d for d in sink.got if not 192 <= d[1] <= 223]
        seqs = [parse_rtp(rx.unprotect(d)).sequence for d in media]  # raises on a bad index
        assert len(media) == peer.stats()["packets_sent"] > 150  # + injected STAP-As
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(media))]
        assert 0 in seqs  # the wrap happened before the move
        nursery.cancel_scope.cancel()
    udp.sock.close()
    sink.sock.close()


async def _stop_a_busy_source() -> float:
    """One run of the scenario below; returns how long the cancelled Source took to stop."""
    sinks = [Sink() for _ in range(40)]
    mux = FakeMux()
    source = Source("cam", ("video",), workers=2)
    k = keys(GCM)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(source.run)
            source.set_sdp(VIDEO_SDP)
            engine = source.engine
            tids = {w["tid"] for w in engine.stats()}
            now = trio.current_time()
            peers = [make_peer(source, mux, k, s.sock.getsockname(), i)
                     for i, s in enumerate(sinks)]
            for p in peers:
                p._connected(now)
            feed(source, 0, 3000, now)  # far more than 2 workers send in 100 ms
            assert sum(w["queued"] for w in engine.stats()) > 500
            started = time.monotonic()
            scope.cancel()
    took = time.monotonic() - started
    assert not threads_left(tids), "a thread is left"
    assert all(p.closed for p in peers) and engine.closed
    for s in sinks:
        s.read()
    counts = [len(s.got) for s in sinks]
    time.sleep(0.05)
    assert sum(s.read() for s in sinks) == 0, "packets after the Source stopped"
    assert sum(counts) < 40 * 3000
    mux.sock.close()
    for s in sinks:
        s.sock.close()
    return took


async def test_stopping_a_source_ends_its_work_within_100_ms() -> None:
    """A Source with 40 native viewers and seconds of queued work (2 workers): cancelling it
    returns within 100 ms, its threads are joined, and no packet arrives afterwards. The
    suite runs 4 xdist workers on 2 CPUs, so a run may lose the CPU for longer than the
    budget: the best of three runs must meet it (a real regression misses it every time)."""
    took = [await _stop_a_busy_source()]
    while took[-1] >= 0.1 and len(took) < 3:
        took.append(await _stop_a_busy_source())
    assert min(took) < 0.1, f"the Source took {[round(x * 1000) for x in took]} ms to stop"


async def test_the_forwarders_workers_end_with_it_also_on_cancellation() -> None:
    """The forwarder's engine (made with its first Source) belongs to ``Forwarder.run``:
    cancelling ``run`` closes the Source, and the worker threads are joined before ``run``
    returns — none is left behind."""
    from rtp.forwarder import Forwarder

    forwarder = Forwarder(fanout_workers=3)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(forwarder.run)
            source = await nursery.start(forwarder.open_source, "cam", ("video",))
            engine = forwarder.engine
            assert source.engine is engine and engine.workers == 3
            tids = {w["tid"] for w in engine.stats()}
            assert all(os.path.exists(f"/proc/self/task/{t}") for t in tids)
            scope.cancel()
    assert forwarder.engine is None and engine.closed and source.closed
    assert not threads_left(tids), "a thread is left"
