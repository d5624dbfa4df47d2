"""The C fan-out's stream transport (ICE-TCP viewers on the native workers, issue 21).

Real TCP connections on 127.0.0.1 and real libsrtp sessions: C viewers attached to the
server side of a connection (``viewer.attach_stream``) get live packets from 2 worker
threads, RFC 4571-framed, in order and decryptable; a slow reader fills the per-viewer
queue, video then skips to the next keyframe (counted) while a UDP viewer of the same
table misses nothing; partial writes (a tiny send buffer, a reader that pauses) never
break the framing; Python's own frames (``send_frame``) land between the media in order;
after ``close`` nothing more is written and ``detach_stream`` hands back the rest. These
tests also run under ASan/UBSan (``test_fanout_sanitizers.py``).
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pylibsrtp
import pytest

from rtp import fanout
from rtp.dtls import SrtpKeys
from rtp.packet import parse_rtp
from rtp.srtp import SrtpSession, new_tx_context
from rtp.tcp_framing import FrameDecoder
from tests.helpers.peer_fakes import tcp_pair

pytestmark = pytest.mark.skipif(not fanout.STREAMS, reason="needs the C fan-out (a compiler)")

GCM = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
VIDEO = fanout.FLAG_VIDEO
KEY = fanout.FLAG_VIDEO | fanout.FLAG_KEYFRAME


def keys() -> SrtpKeys:
    return SrtpKeys(GCM, os.urandom(16), os.urandom(12), os.urandom(16), os.urandom(12))


def receiver_session(k: SrtpKeys) -> SrtpSession:
    return SrtpSession(SrtpKeys(k.profile, k.rx_key, k.rx_salt, k.tx_key, k.tx_salt))


@contextmanager
def engine(workers: int = 2) -> Iterator[Any]:
    eng = fanout.open_engine(workers)
    assert eng is not None
    try:
        yield eng
    finally:
        eng.close()


@contextmanager
def eventfd() -> Iterator[int]:
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def rtp(seq: int, size: int = 1000, keyframe: bool = False) -> bytes:
    """A producer packet: H264-like payload, an IDR NAL header when it starts a keyframe."""
    payload = bytes([0x65 if keyframe else 0x41]) + seq.to_bytes(2, "big") * ((size - 13) // 2)
    return (bytes([0x80, 0x60]) + (seq & 0xFFFF).to_bytes(2, "big") + (seq * 3000).to_bytes(4, "big")
            + (0xABC).to_bytes(4, "big") + payload)


def stream_viewer(eng: Any, table: Any, k: SrtpKeys, sock: socket.socket, wake: int,
                  slot_ssrc: int, limit: int = 512 * 1024) -> Any:
    v = eng.viewer(new_tx_context(k))
    v.set_track(0, 102, slot_ssrc, 0, 0)
    v.attach_stream(sock.fileno(), wake, limit, limit // 4, b"")
    v.join(0, table)
    return v


def read_all(client: socket.socket, idle: float = 0.3) -> bytes:
    """Everything the client side gets until it has been idle for ``idle`` seconds."""
    out = bytearray()
    client.settimeout(idle)
    while True:
        try:
            chunk = client.recv(65536)
        except TimeoutError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def writer(viewer: Any, wake: int, sock: socket.socket, stop: threading.Event) -> None:
    """What ``TcpConnection``'s writer task does (here in a thread): wait for the worker's
    wake-up, flush while the socket drains (until ``stop`` is set or the viewer detached)."""
    while not stop.is_set():
        r, _, _ = select.select([wake], [], [], 0.05)
        if not r:
            continue
        try:
            os.eventfd_read(wake)
        except BlockingIOError:
            pass
        while True:
            left = viewer.flush()
            if left < 0:
                return  # detached
            if left == 0:
                break
            select.select([], [sock], [], 0.05)


def test_a_stream_viewer_gets_framed_decryptable_packets_from_two_workers() -> None:
    k = keys()
    with engine(2) as eng, tcp_pair() as (s1, c1), tcp_pair() as (s2, c2), tcp_pair() as (
            s3, c3), eventfd() as w1, eventfd() as w2, eventfd() as w3:
        table = eng.table()
        viewers = [stream_viewer(eng, table, k, s, w, 0x1000 + i)
                   for i, (s, w) in enumerate(((s1, w1), (s2, w2), (s3, w3)))]
        assert {v.worker for v in viewers} == {0, 1}  # both workers write streams
        for seq in range(300):
            table.fan_out(rtp(seq, keyframe=seq % 50 == 0), seq, seq * 3000,
                          KEY if seq % 50 == 0 else VIDEO)
        eng.sync()
        for i, (v, c) in enumerate(zip(viewers, (c1, c2, c3), strict=True)):
            frames = FrameDecoder(max_frame=2048).feed(read_all(c))
            rx = receiver_session(k)
            seqs = []
            for f in frames:
                plain = rx.unprotect(f)
                hdr = parse_rtp(plain)
                assert hdr.payload_type == 102 and hdr.ssrc == 0x1000 + i
                assert plain[12:] == rtp(hdr.sequence)[12:] or plain[12] == 0x65
                seqs.append(hdr.sequence)
            assert seqs == list(range(300))
            packets, nbytes, dropped, _ = v.counters(0)
            st = v.stream_stats()
            assert packets == 300 and dropped == 0 and st["frames"] == 300, st
            assert st["bytes_out"] == nbytes + 2 * 300 and st["queued"] == 0
            v.close()


def test_a_slow_reader_skips_to_a_keyframe_and_a_udp_viewer_misses_nothing() -> None:
    """The TCP client reads nothing: the C queue stops at its limit, video is skipped up to
    the next keyframe (counted per viewer) — the UDP viewer on the same table and worker
    gets every packet. When the client reads again (the writer flushes on wake-ups), the
    stream is intact and every gap ends at a keyframe."""
    k = keys()
    limit = 64 * 1024
    with engine(2) as eng, tcp_pair(sndbuf=4096, rcvbuf=4096) as (server, client), \
            eventfd() as wake:
        udp_rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp_rx.bind(("127.0.0.1", 0))
        udp_rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        udp_tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp_tx.setblocking(False)
        try:
            table = eng.table()
            slow = stream_viewer(eng, table, k, server, wake, 0x2000, limit)
            fast = eng.viewer(new_tx_context(k))
            fast.set_track(0, 102, 0x3000, 0, 0)
            fast.set_address(udp_tx.fileno(), udp_rx.getsockname())
            fast.join(0, table)
            got: list[bytes] = []
            udp_rx.settimeout(0.5)

            def drain_udp() -> None:
                while True:
                    try:
                        got.append(udp_rx.recv(2048))
                    except (TimeoutError, OSError):
                        return

            t = threading.Thread(target=drain_udp)
            t.start()
            total = 1500
            for seq in range(total):
                key = seq % 100 == 0
                table.fan_out(rtp(seq, keyframe=key), seq, seq * 3000, KEY if key else VIDEO)
                if seq % 64 == 0:
                    time.sleep(0.002)
            eng.sync()
            t.join()
            assert len(got) == total and fast.counters(0)[2] == 0  # not stalled by the slow one
            st = slow.stream_stats()
            packets, _, dropped, _ = slow.counters(0)
            assert st["skips"] >= 1 and st["skipped"] > 100 and st["queue_full"] >= 1, st
            assert st["peak"] <= limit and st["skipping"], st
            assert dropped == st["skipped"] + st["queue_full"], (dropped, st)
            assert packets + dropped == total
            # it reads again: the writer flushes on the worker's wake-ups
            stop = threading.Event()
            flusher = threading.Thread(target=writer, args=(slow, wake, server, stop))
            flusher.start()
            chunks: list[bytes] = []
            reading = threading.Thread(target=lambda: chunks.append(read_all(client, 0.8)))
            reading.start()
            time.sleep(0.3)
            for seq in range(total, total + 300):  # the stream goes on: skipping ends at a key
                key = seq % 100 == 0
                table.fan_out(rtp(seq, keyframe=key), seq, seq * 3000, KEY if key else VIDEO)
                time.sleep(0.001)
            eng.sync()
            reading.join()
            stop.set()
            flusher.join()
            data = b"".join(chunks)
            rx = receiver_session(k)
            seqs = [parse_rtp(rx.unprotect(f)).sequence
                    for f in FrameDecoder(max_frame=2048).feed(data)]
            assert len(seqs) == slow.stream_stats()["frames"]  # every frame taken, intact
            assert seqs == sorted(seqs) and seqs[-1] == total + 299
            gaps = [b for a, b in zip(seqs, seqs[1:], strict=False) if b != a + 1]
            assert gaps and all(b % 100 == 0 for b in gaps), gaps  # resumed at keyframes
            assert not slow.stream_stats()["skipping"]
            slow.close()
            fast.close()
        finally:
            udp_rx.close()
            udp_tx.close()


def test_partial_writes_and_control_frames_keep_the_framing() -> None:
    """A 4 KiB send buffer and a reader that pauses: the kernel takes parts of frames; what
    the client reassembles is every frame in order, media and Python's control frames
    (``send_frame``, after an ``engine.sync``: in submission order) alike."""
    k = keys()
    with engine(2) as eng, tcp_pair(sndbuf=4096, rcvbuf=4096) as (server, client), \
            eventfd() as wake:
        table = eng.table()
        v = stream_viewer(eng, table, k, server, wake, 0x4000)
        received = bytearray()
        done = threading.Event()

        def slow_reader() -> None:
            client.settimeout(0.5)
            while True:
                try:
                    chunk = client.recv(700)  # small reads, with pauses
                except TimeoutError:
                    if done.is_set():
                        return
                    continue
                if not chunk:
                    return
                received.extend(chunk)
                time.sleep(0.0005)

        reader = threading.Thread(target=slow_reader)
        reader.start()
        stop = threading.Event()
        flusher = threading.Thread(target=writer, args=(v, wake, server, stop))
        flusher.start()
        controls = []
        seq = 0
        try:
            for round_ in range(40):
                for _ in range(10):
                    table.fan_out(rtp(seq, size=200 + (seq * 37) % 1100), seq, seq * 3000, VIDEO)
                    seq += 1
                eng.sync()
                control = bytes([0, 1]) + round_.to_bytes(2, "big") + os.urandom(round_ * 7 + 20)
                assert v.send_frame(control)
                controls.append(control)
            eng.sync()
            deadline = time.monotonic() + 10
            while v.stream_stats()["queued"] and time.monotonic() < deadline:
                time.sleep(0.01)
            assert v.stream_stats()["queued"] == 0
        finally:
            done.set()
            reader.join()
            v.close()
            stop.set()
            flusher.join()
            assert v.detach_stream() == (b"", 0)
        frames = FrameDecoder(max_frame=2048).feed(bytes(received))
        rx = receiver_session(k)
        expect_seq = 0
        got_controls = []
        for f in frames:
            if f[0] == 0:  # a control frame (STUN-like first byte)
                got_controls.append(f)
                assert expect_seq == 10 * len(got_controls)  # after the media before it
                continue
            hdr = parse_rtp(rx.unprotect(f))
            assert hdr.sequence == expect_seq
            expect_seq += 1
        assert expect_seq == 400 and got_controls == controls
        st = v.stream_stats()
        assert st["peak"] > 0 and v.counters(0)[2] == 0, st  # the kernel took parts: queued


def test_after_close_nothing_is_written_and_detach_hands_back_the_rest() -> None:
    """A client that reads nothing: the C queue holds bytes; ``close`` stops the viewer,
    ``detach_stream`` returns the queued bytes (whole frames after what the kernel took),
    and further fan-outs write nothing — so Python can append the goodbye."""
    k = keys()
    with engine(2) as eng, tcp_pair(sndbuf=4096, rcvbuf=4096) as (server, client), \
            eventfd() as wake:
        table = eng.table()
        v = stream_viewer(eng, table, k, server, wake, 0x5000)
        for seq in range(200):
            table.fan_out(rtp(seq), seq, seq * 3000, VIDEO)
        eng.sync()
        assert v.stream_stats()["queued"] > 0
        assert os.eventfd_read(wake) == 1  # the worker asked for writability (once)
        v.close()
        assert not v.send_frame(b"\x00\x01late")  # closed: Python's frames go elsewhere now
        rest, head_left = v.detach_stream()
        assert 0 <= head_left <= len(rest) and len(rest) > head_left  # a started frame + whole ones
        pos = head_left
        while pos < len(rest):  # after the started frame's end: whole frames only
            pos += 2 + int.from_bytes(rest[pos:pos + 2], "big")
        assert pos == len(rest)
        for seq in range(200, 260):
            table.fan_out(rtp(seq), seq, seq * 3000, VIDEO)
        eng.sync()
        assert v.flush() == -1 and v.stream_stats()["queued"] == 0
        bye = b"\x81\xcb\x00\x01" + (0x5000).to_bytes(4, "big")
        server.setblocking(True)
        sender = threading.Thread(target=server.sendall,
                                  args=(rest + len(bye).to_bytes(2, "big") + bye,))
        sender.start()
        data = read_all(client, idle=0.5)
        sender.join()
        frames = FrameDecoder(max_frame=2048).feed(data)
        assert frames[-1] == bye
        rx = receiver_session(k)
        seqs = [parse_rtp(rx.unprotect(f)).sequence for f in frames[:-1]]
        assert seqs == list(range(len(seqs))) and seqs[-1] < 200
        assert v.counters(0)[0] == len(seqs)


def test_closing_the_engine_with_stalled_streams_is_quick() -> None:
    """Stream viewers whose clients read nothing and seconds of queued work: closing the
    engine (what a stopping forwarder does) takes well under 100 ms."""
    k = keys()
    with tcp_pair(sndbuf=4096, rcvbuf=4096) as (s1, _c1), \
            tcp_pair(sndbuf=4096, rcvbuf=4096) as (s2, _c2), eventfd() as w1, eventfd() as w2:
        eng = fanout.open_engine(2)
        try:
            table = eng.table()
            viewers = [stream_viewer(eng, table, k, s, w, 0x6000 + i)
                       for i, (s, w) in enumerate(((s1, w1), (s2, w2)))]
            for seq in range(3000):
                table.fan_out(rtp(seq), seq, seq * 3000, VIDEO)
            table.close()
            start = time.perf_counter()
            eng.close()
            took = time.perf_counter() - start
        finally:
            eng.close()
        assert took < 0.1, took
        for v in viewers:
            assert v.closed and v.flush() >= 0  # still attached (Python detaches), no crash
            v.detach_stream()
