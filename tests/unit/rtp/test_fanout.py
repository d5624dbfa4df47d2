"""The hot path: the native fan-out (``rtp._fanout``: tables, C viewers, worker threads) and
the Python loop do the same, byte for byte and counter for counter.

Real UDP sockets on 127.0.0.1 and real libsrtp sessions: the same packets are sent to twin
viewers (identical SRTP keys, so identical ciphertext) once through each implementation —
the engine inline (no thread) and with 2 and 3 worker threads — and what the sinks receive,
and every counter, must be equal; a viewer's SRTP session decrypts it to the rewritten
header. Failure cases (no keys, oversized packet, no socket, a full ring) drop and count
for that viewer only.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pylibsrtp
import pytest

from rtp import fanout
from rtp.dtls import SrtpKeys
from rtp.packet import parse_rtp
from rtp.peer import OutTrack
from rtp.source import MediaPacket
from rtp.srtp import SrtpSession, new_tx_context

GCM = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
CM = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80


def keys(profile: int) -> SrtpKeys:
    salt = 12 if profile == GCM else 14
    return SrtpKeys(profile, os.urandom(16), os.urandom(salt), os.urandom(16), os.urandom(salt))


def swapped(k: SrtpKeys) -> SrtpKeys:
    """The viewer's side of ``k`` (it receives with what we send with)."""
    return SrtpKeys(k.profile, k.rx_key, k.rx_salt, k.tx_key, k.tx_salt)


@contextmanager
def udp(n: int, family: int = socket.AF_INET) -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


@contextmanager
def engine(workers: int, ring_slots: int = fanout.RING_SLOTS) -> Iterator[Any]:
    eng = fanout.open_engine(workers, ring_slots)
    assert eng is not None
    try:
        yield eng
    finally:
        eng.close()


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(2048))
        except BlockingIOError:
            return out


def params(i: int) -> tuple[int, int, int, int]:
    """payload type, SSRC, seq offset, ts offset of viewer ``i`` (offsets that wrap)."""
    return 96 + i % 20, 0x1000 + i, (-5 - i) & 0xFFFF, (0xFFFFFF00 + i) & 0xFFFFFFFF


def py_track(session: SrtpSession | None, sender: socket.socket, addr: tuple[str, int],
             i: int) -> OutTrack:
    pt, ssrc, sd, tsd = params(i)
    t = OutTrack("video", pt, ssrc, seq_delta=sd, ts_delta=tsd)
    if session is not None:
        t.protect = session.raw_protect
    t.sendto = sender.sendto
    t.addr = addr
    t.fd = sender.fileno()
    return t


def native_viewer(eng: Any, table: Any, k: SrtpKeys | None, sender: socket.socket,
                  addr: tuple[str, int], i: int, fd: int | None = None) -> Any:
    viewer = eng.viewer(0 if k is None else new_tx_context(k))
    viewer.set_address(sender.fileno() if fd is None else fd, addr)
    viewer.set_track(0, *params(i))
    viewer.join(0, table)
    return viewer


def counters(viewer: Any) -> tuple[int, int, int]:
    packets, size, dropped, _ = viewer.counters(0)
    return packets, size, dropped


def packets() -> list[MediaPacket]:
    """Marker set and clear, sizes from a bare header to the largest protectable packet,
    sequence numbers and timestamps that wrap once the offsets are added."""
    out = []
    for n, size in enumerate([12, 13, 200, 1200, 1356] * 6):
        b1 = (0x80 if n % 3 == 0 else 0) | 111  # the producer's PT must be replaced
        header = bytes([0x80, b1]) + (65530 + n & 0xFFFF).to_bytes(2, "big") + \
            (n * 3000).to_bytes(4, "big") + (0xABCDEF).to_bytes(4, "big")
        data = header + os.urandom(size - 12)
        out.append(MediaPacket("video", 65530 + n & 0xFFFF, (0xFFFFFFF0 + n * 3000) & 0xFFFFFFFF,
                               data, n == 0, 0.0))
    return out


def test_the_native_fan_out_is_built_and_used() -> None:
    assert fanout.NATIVE, ("rtp._fanout was not built (it needs a C compiler and the Python "
                           "headers at install time); the Python loop is in use")
    with engine(2) as eng:
        assert eng.workers == 2 and eng.threaded
        tids = [w["tid"] for w in eng.stats()]
        assert len(set(tids)) == 2 and all(t > 0 for t in tids)
    with engine(1) as eng:
        assert not eng.threaded  # one worker: inline on the caller's thread, no thread
    assert fanout.default_workers() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("workers", [1, 2, 3], ids=["inline", "2-workers", "3-workers"])
@pytest.mark.parametrize("profile", [GCM, CM], ids=["aes-gcm", "aes-cm-sha1"])
def test_native_and_python_send_the_same_bytes_and_count_the_same(profile: int,
                                                                  workers: int) -> None:
    viewers = 70  # more than one sendmmsg batch (64)
    with udp(2 + 2 * viewers) as socks, engine(workers) as eng:
        send_py, send_nat, sinks = socks[0], socks[1], socks[2:]
        table = eng.table()
        key_list = [keys(profile) for _ in range(viewers)]
        py_tracks = [py_track(SrtpSession(k), send_py, sinks[2 * i].getsockname(), i)
                     for i, k in enumerate(key_list)]
        nat = [native_viewer(eng, table, k, send_nat, sinks[2 * i + 1].getsockname(), i)
               for i, k in enumerate(key_list)]
        assert {v.worker for v in nat} == set(range(workers))  # spread over every worker
        pkts = packets()
        for pkt in pkts:
            fanout.fan_out_python(py_tracks, pkt)
            table.fan_out(pkt.data, pkt.seq, pkt.ts)
        eng.sync()
        assert table.count() == viewers
        for i in range(viewers):
            got_py, got_nat = drain(sinks[2 * i]), drain(sinks[2 * i + 1])
            assert len(got_py) == len(pkts)
            assert got_nat == got_py, f"viewer {i}: the two implementations differ"
            viewer = SrtpSession(swapped(key_list[i]))
            pt, ssrc, sd, tsd = params(i)
            for pkt, wire in zip(pkts, got_nat, strict=True):
                plain = viewer.unprotect(wire)
                hdr = parse_rtp(plain)
                assert hdr.payload_type == pt
                assert hdr.marker == bool(pkt.data[1] & 0x80)
                assert hdr.sequence == (pkt.seq + sd) & 0xFFFF
                assert hdr.timestamp == (pkt.ts + tsd) & 0xFFFFFFFF
                assert hdr.ssrc == ssrc
                assert plain[12:] == pkt.data[12:]
        for tp, vn in zip(py_tracks, nat, strict=True):
            assert counters(vn) == (tp.packets, tp.bytes, tp.dropped)
            assert tp.packets == len(pkts) and tp.dropped == 0
        for v in nat:
            v.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_failures_drop_for_that_viewer_only_in_both(workers: int) -> None:
    with udp(4) as socks, engine(workers) as eng:
        send_py, send_nat, sink_py, sink_nat = socks
        table = eng.table()
        closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closed.close()
        k_good, k_other = keys(GCM), keys(GCM)
        py_fan = [py_track(SrtpSession(k_good), send_py, sink_py.getsockname(), 0),
                  py_track(None, send_py, sink_py.getsockname(), 2),
                  py_track(SrtpSession(k_other), closed, sink_py.getsockname(), 3)]
        nat_fan = [native_viewer(eng, table, k_good, send_nat, sink_nat.getsockname(), 0),
                   native_viewer(eng, table, None, send_nat, sink_nat.getsockname(), 2),
                   native_viewer(eng, table, k_other, send_nat, sink_nat.getsockname(), 3,
                                 fd=-1)]
        ok = packets()[3]
        too_long = MediaPacket("video", 1, 1, ok.data + b"x" * 200, False, 0.0)  # 1400 bytes
        for pkt in (ok, too_long, ok):
            fanout.fan_out_python(py_fan, pkt)
            table.fan_out(pkt.data, pkt.seq, pkt.ts)
        eng.sync()
        assert drain(sink_nat) == drain(sink_py) != []
        for tp, vn in zip(py_fan, nat_fan, strict=True):
            assert counters(vn) == (tp.packets, tp.bytes, tp.dropped)
        assert counters(nat_fan[0])[::2] == (2, 1)  # only the oversized one was dropped
        assert [counters(v)[2] for v in nat_fan] == [1, 3, 3]
        with pytest.raises(ValueError, match="not a numeric address"):
            nat_fan[0].set_address(send_nat.fileno(), ("not-an-address", 9))
        with pytest.raises(ValueError):
            nat_fan[0].set_track(9, 96, 1, 0, 0)  # no such slot


def test_ipv6_viewers_get_the_same_bytes_from_both() -> None:
    """Viewers on IPv6 (the mux bound to ``::`` or an IPv6 address) in both fan-outs."""
    with udp(4, socket.AF_INET6) as socks, engine(2) as eng:
        send_py, send_nat, sink_py, sink_nat = socks
        table = eng.table()
        k = keys(GCM)
        py = [py_track(SrtpSession(k), send_py, sink_py.getsockname()[:2], 0)]
        nat = native_viewer(eng, table, k, send_nat, sink_nat.getsockname()[:2], 0)
        pkts = packets()
        for pkt in pkts:
            fanout.fan_out_python(py, pkt)
            table.fan_out(pkt.data, pkt.seq, pkt.ts)
        eng.sync()
        got_py, got_nat = drain(sink_py), drain(sink_nat)
        assert len(got_py) == len(pkts) and got_nat == got_py
        assert counters(nat)[::2] == (py[0].packets, py[0].dropped) == (len(pkts), 0)


def test_a_viewer_send_is_protected_and_counted_by_kind() -> None:
    """``Viewer.send`` (bursts, replays, NACK repairs): media counts in packets/bytes, a
    retransmission and RTX in ``retransmitted`` (RTX also in ``rtx_sent``); an SRTP refusal
    (too long) in ``refused()`` under its reason index."""
    with udp(2) as (sender, sink), engine(2) as eng:
        k = keys(CM)
        viewer = eng.viewer(new_tx_context(k))
        viewer.set_address(sender.fileno(), sink.getsockname())
        data = packets()[3].data
        assert viewer.send(0, data, fanout_kind("media"))
        assert viewer.send(1, data, fanout_kind("retransmission"))
        assert viewer.send(1, data, fanout_kind("rtx"))
        assert viewer.send(1, data + bytes(300), fanout_kind("rtx"), 2)  # too long: refused
        eng.sync()
        got = drain(sink)
        assert len(got) == 3
        assert SrtpSession(swapped(k)).unprotect(got[0]) == data
        media_bytes = len(got[0])
        assert viewer.counters(0) == (1, media_bytes, 0, 0)
        assert viewer.counters(1) == (0, 0, 0, 2)
        assert viewer.rtx_sent == 1 and viewer.refused() == (0, 0, 1, 0)
        viewer.close()
        assert not viewer.send(0, data)  # closed: nothing is queued any more
        eng.sync()
        assert drain(sink) == []


def fanout_kind(name: str) -> int:
    from rtp import _fanout  # type: ignore[attr-defined]

    return {"media": _fanout.KIND_MEDIA, "retransmission": _fanout.KIND_RETRANSMISSION,
            "rtx": _fanout.KIND_RTX}[name]


def test_a_full_ring_drops_for_that_stripe_and_counts_per_viewer() -> None:
    """A worker whose ring is full: the live packet is dropped for its viewers (their
    ``dropped`` grows by it once the worker runs again) and per worker in ``stats()``;
    changes (join/leave/close) are never dropped; packets sent + dropped = packets fanned."""
    with udp(2) as (sender, sink), engine(2, ring_slots=128) as eng:
        table = eng.table()
        viewers = [native_viewer(eng, table, keys(GCM), sender, sink.getsockname(), i)
                   for i in range(40)]
        pkt = packets()[2]
        n = 3000
        for _ in range(n):  # far faster than 2 workers can protect and send for 40 viewers
            table.fan_out(pkt.data, pkt.seq, pkt.ts)
        for v in viewers:
            v.leave(0)  # changes get through however full the ring is
        eng.sync()
        drops = sum(w["ring_drops"] for w in eng.stats())
        assert drops > 0
        for v in viewers:
            packets_, _, dropped = counters(v)
            assert packets_ + dropped == n, (packets_, dropped)
        assert table.count() == 0


def test_an_address_change_takes_effect_in_order() -> None:
    """ICE switched the viewer to another address: packets fanned out before the change go
    to the old one, after it to the new one; none lost, none doubled, counted once."""
    with udp(3) as (sender, old, new), engine(2) as eng:
        table = eng.table()
        k = keys(GCM)
        viewer = native_viewer(eng, table, k, sender, old.getsockname(), 0)
        pkts = packets()
        for pkt in pkts[:10]:
            table.fan_out(pkt.data, pkt.seq, pkt.ts)
        viewer.set_address(sender.fileno(), new.getsockname())
        for pkt in pkts[10:]:
            table.fan_out(pkt.data, pkt.seq, pkt.ts)
        eng.sync()
        got_old, got_new = drain(old), drain(new)
        assert (len(got_old), len(got_new)) == (10, len(pkts) - 10)
        session = SrtpSession(swapped(k))
        seqs = [parse_rtp(session.unprotect(d)).sequence for d in got_old + got_new]
        assert seqs == [(p.seq + params(0)[2]) & 0xFFFF for p in pkts]
        assert counters(viewer)[::2] == (len(pkts), 0)
