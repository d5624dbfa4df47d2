"""The hot path: the C fan-out (``rtp._fanout``) and the Python loop do the same, byte for byte.

Real UDP sockets on 127.0.0.1 and real libsrtp sessions: the same packets are sent to twin
viewer tracks (identical SRTP keys, so identical ciphertext) once through each
implementation, and what the sinks receive, and every counter, must be equal; a viewer's
SRTP session decrypts it to the rewritten header. Failure cases (bad address, no keys,
oversized packet, closed socket) drop and count for that viewer only, in both.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pylibsrtp
import pytest

from rtp import fanout
from rtp.dtls import SrtpKeys
from rtp.packet import parse_rtp
from rtp.peer import OutTrack
from rtp.source import MediaPacket
from rtp.srtp import SrtpSession

GCM = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
CM = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80


def keys(profile: int) -> SrtpKeys:
    salt = 12 if profile == GCM else 14
    return SrtpKeys(profile, os.urandom(16), os.urandom(salt), os.urandom(16), os.urandom(salt))


def swapped(k: SrtpKeys) -> SrtpKeys:
    """The viewer's side of ``k`` (it receives with what we send with)."""
    return SrtpKeys(k.profile, k.rx_key, k.rx_salt, k.tx_key, k.tx_salt)


@contextmanager
def udp(n: int) -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(2048))
        except BlockingIOError:
            return out


def track(session: SrtpSession | None, sender: socket.socket, addr: tuple[str, int],
          i: int) -> OutTrack:
    t = OutTrack("video", 96 + i % 20, 0x1000 + i, seq_delta=-5 - i, ts_delta=0xFFFFFF00 + i)
    if session is not None:
        t.protect = session.raw_protect
        t.srtp_ctx = session.context_address
    t.sendto = sender.sendto
    t.addr = addr
    t.fd = sender.fileno()
    return t


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
    assert fanout.fan_out is not fanout.fan_out_python


@pytest.mark.parametrize("profile", [GCM, CM], ids=["aes-gcm", "aes-cm-sha1"])
def test_native_and_python_send_the_same_bytes_and_count_the_same(profile: int) -> None:
    viewers = 70  # more than one sendmmsg batch (64)
    with udp(2 + 2 * viewers) as socks:
        send_py, send_nat, sinks = socks[0], socks[1], socks[2:]
        key_list = [keys(profile) for _ in range(viewers)]
        py_tracks = [track(SrtpSession(k), send_py, sinks[2 * i].getsockname(), i)
                     for i, k in enumerate(key_list)]
        nat_tracks = [track(SrtpSession(k), send_nat, sinks[2 * i + 1].getsockname(), i)
                      for i, k in enumerate(key_list)]
        pkts = packets()
        for pkt in pkts:
            fanout.fan_out_python(py_tracks, pkt)
            fanout.fan_out(nat_tracks, pkt)
        for i in range(viewers):
            got_py, got_nat = drain(sinks[2 * i]), drain(sinks[2 * i + 1])
            assert len(got_py) == len(pkts)
            assert got_nat == got_py, f"viewer {i}: the two implementations differ"
            viewer = SrtpSession(swapped(key_list[i]))
            for pkt, wire in zip(pkts, got_nat, strict=True):
                plain = viewer.unprotect(wire)
                hdr = parse_rtp(plain)
                t = nat_tracks[i]
                assert hdr.payload_type == t.payload_type
                assert hdr.marker == bool(pkt.data[1] & 0x80)
                assert hdr.sequence == (pkt.seq + t.seq_delta) & 0xFFFF
                assert hdr.timestamp == (pkt.ts + t.ts_delta) & 0xFFFFFFFF
                assert hdr.ssrc == t.ssrc
                assert plain[12:] == pkt.data[12:]
        for tp, tn in zip(py_tracks, nat_tracks, strict=True):
            assert (tn.packets, tn.bytes, tn.dropped) == (tp.packets, tp.bytes, tp.dropped)
            assert tn.packets == len(pkts) and tn.dropped == 0


def test_failures_drop_for_that_viewer_only_in_both() -> None:
    with udp(4) as socks:
        send_py, send_nat, sink_py, sink_nat = socks
        closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closed.close()
        k_good, k_other = keys(GCM), keys(GCM)

        def fan(sender: socket.socket, sink: socket.socket) -> list[OutTrack]:
            good = track(SrtpSession(k_good), sender, sink.getsockname(), 0)
            bad_addr = track(SrtpSession(k_other), sender, ("not-an-address", 9), 1)
            no_keys = track(None, sender, sink.getsockname(), 2)
            dead_socket = track(SrtpSession(k_other), closed, sink.getsockname(), 3)
            dead_socket.fd = -1 if sender is send_nat else dead_socket.fd
            return [bad_addr, good, no_keys, dead_socket]

        py_fan, nat_fan = fan(send_py, sink_py), fan(send_nat, sink_nat)
        ok = packets()[3]
        too_long = MediaPacket("video", 1, 1, ok.data + b"x" * 200, False, 0.0)  # 1400 bytes
        for pkt in (ok, too_long, ok):
            fanout.fan_out_python(py_fan, pkt)
            fanout.fan_out(nat_fan, pkt)
        assert drain(sink_nat) == drain(sink_py) != []
        for tp, tn in zip(py_fan, nat_fan, strict=True):
            assert (tn.packets, tn.bytes, tn.dropped) == (tp.packets, tp.bytes, tp.dropped)
        good = nat_fan[1]
        assert (good.packets, good.dropped) == (2, 1)  # only the oversized one was dropped
        assert [t.dropped for t in nat_fan] == [3, 1, 3, 3]


def test_a_wrong_track_object_raises_in_both_after_sending_to_the_good_ones() -> None:
    with udp(4) as socks:
        send_py, send_nat, sink_py, sink_nat = socks
        k = keys(GCM)
        good_py = track(SrtpSession(k), send_py, sink_py.getsockname(), 0)
        good_nat = track(SrtpSession(k), send_nat, sink_nat.getsockname(), 0)
        pkt = packets()[3]
        with pytest.raises(AttributeError):
            fanout.fan_out_python([good_py, object()], pkt)  # type: ignore[list-item]
        with pytest.raises(AttributeError):
            fanout.fan_out([good_nat, object()], pkt)  # type: ignore[list-item]
        assert drain(sink_nat) == drain(sink_py) != []
        assert good_nat.packets == good_py.packets == 1


def test_ipv6_viewers_get_the_same_bytes_from_both() -> None:
    """Viewers on IPv6 (the mux bound to ``::`` or an IPv6 address) in both fan-outs."""
    socks = []
    try:
        for _ in range(4):
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.bind(("::1", 0))
            s.setblocking(False)
            socks.append(s)
        send_py, send_nat, sink_py, sink_nat = socks
        k = keys(GCM)
        py = [track(SrtpSession(k), send_py, sink_py.getsockname(), 0)]
        nat = [track(SrtpSession(k), send_nat, sink_nat.getsockname(), 0)]
        pkts = packets()
        for pkt in pkts:
            fanout.fan_out_python(py, pkt)
            fanout.fan_out(nat, pkt)
        got_py, got_nat = drain(sink_py), drain(sink_nat)
        assert len(got_py) == len(pkts) and got_nat == got_py
        assert (nat[0].packets, nat[0].dropped) == (py[0].packets, py[0].dropped) == (len(pkts), 0)
    finally:
        for s in socks:
            s.close()
