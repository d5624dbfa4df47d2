"""RTMP sinks on the native sender pool (issue 23): ``rtp._fanout`` Engine.sink/group/hub.

Real TCP connections on 127.0.0.1, 2 worker threads: the chunk stream each sink's socket
gets is exactly what ``trio_core.rtmp.registry.Player`` would build (header per player —
its stream id, timestamps relative to its base, extended timestamps re-chunked — body
shared), in order, across partial writes; a reader that never reads fills its queue, skips
to the next keyframe and is dropped after ``max_skips`` while the other sink of the group
misses nothing; control units are never skipped; after ``close`` nothing more is written
to the fd; engine close with open sinks frees them; the shared pool (``rtp.sender_pool``)
is one engine for every holder and ends with the last. These tests also run under
ASan/UBSan (``test_fanout_sanitizers.py``).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from rtmp.chunk import ChunkReader, continuation, message_header
from rtp import sender_pool
from tests.helpers.peer_fakes import tcp_pair

pytestmark = pytest.mark.skipif(not sender_pool.SINKS, reason="needs the C fan-out (a compiler)")

CHUNK = 4096
VIDEO, AUDIO = 9, 8
VIDEO_CSID, AUDIO_CSID = 6, 4  # rtmp.connection's
DROPPED, FAILED, FINISHED, CLOSED = 1, 2, 4, 8


@contextmanager
def engine(workers: int = 2) -> Iterator[Any]:
    from rtp import _fanout  # type: ignore[attr-defined]

    eng = _fanout.Engine(0, 0, workers, 4096)
    try:
        yield eng
    finally:
        eng.close()


def payload(i: int, size: int) -> bytes:
    return bytes([0x17 if i % 10 == 0 else 0x27, 1]) + (i.to_bytes(4, "big") * (size // 4 + 1))[:size - 2]


def send(group: Any, type_id: int, ts: int, body: bytes, keyframe: bool) -> None:
    csid = VIDEO_CSID if type_id == VIDEO else AUDIO_CSID
    group.send(body[:CHUNK], continuation(body, CHUNK, csid), type_id, csid, ts, len(body), CHUNK,
               keyframe)


def expected(type_id: int, ts: int, body: bytes, stream_id: int, base: int) -> bytes:
    """What Player.parts builds for one message (the Python path's bytes)."""
    rel = (ts - base) & 0xFFFFFFFF
    rel = 0 if rel >= 0x80000000 else rel
    csid = VIDEO_CSID if type_id == VIDEO else AUDIO_CSID
    return (message_header(type_id, stream_id, rel, len(body), csid) + body[:CHUNK]
            + continuation(body, CHUNK, csid, rel))


def read_all(client: socket.socket, idle: float = 0.5) -> bytes:
    out = bytearray()
    client.settimeout(idle)
    while True:
        try:
            chunk = client.recv(1 << 20)
        except TimeoutError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def pump(sink: Any, sock: socket.socket, hub: Any, stop: threading.Event) -> None:
    """What the RTMP server's writer does (here in a thread): on the hub's word, flush while
    the socket drains."""
    while not stop.is_set():
        r, _, _ = select.select([hub.fileno()], [], [], 0.05)
        if r:
            hub.take()
        while True:
            queued, state, _ = sink.poll()
            if state & (DROPPED | FAILED) or queued == 0:
                break
            select.select([], [sock], [], 0.05)


def test_every_sink_gets_the_players_chunk_stream_in_order_from_two_workers() -> None:
    messages = []
    for i in range(120):
        size = 40000 if i % 10 == 0 else (9000 if i % 2 else 300)
        messages.append((VIDEO if i % 2 == 0 else AUDIO, 1000 + 20 * i, payload(i, size), i % 10 == 0))
    messages.append((VIDEO, 0xFFFFFF + 5000, payload(999, 10000), False))  # extended timestamps
    with engine(2) as eng, tcp_pair() as (s1, c1), tcp_pair() as (s2, c2), tcp_pair(
            sndbuf=4096, rcvbuf=4096) as (s3, c3):
        hub = eng.hub()
        group = eng.group()
        sinks = [eng.sink(hub, n, s.fileno(), 8 << 20, 3) for n, s in enumerate((s1, s2, s3))]
        assert {s.worker for s in sinks} == {0, 1}
        for n, sink in enumerate(sinks):
            sink.unit(b"hello-%d" % n, False, True)  # a control unit before the media
            sink.join(group, n + 1, 1000 + 20 * n)  # its own stream id and base
        stop = threading.Event()
        pumps = [threading.Thread(target=pump, args=(sinks[2], s3, hub, stop))]
        for t in pumps:
            t.start()
        got = [bytearray() for _ in sinks]

        def drain(i: int, c: socket.socket) -> None:
            got[i] += read_all(c, 1.0)

        readers = [threading.Thread(target=drain, args=(i, c)) for i, c in enumerate((c1, c2, c3))]
        for t in readers:
            t.start()
        for m in messages:
            send(group, *m)
        for t in readers:
            t.join()
        stop.set()
        for t in pumps:
            t.join()
        for n, sink in enumerate(sinks):
            want = b"hello-%d" % n + b"".join(
                expected(t, ts, body, n + 1, 1000 + 20 * n) for t, ts, body, _ in messages)
            assert bytes(got[n]) == want, n
            st = sink.stats()
            assert st["bytes_out"] == len(want) and st["skips"] == 0 and not st["dropped"]
        # and an RTMP reader parses them back (the extended timestamp included)
        reader = ChunkReader(max_message_size=1 << 20)
        reader.chunk_size = CHUNK
        parsed = reader.receive_data(bytes(got[0])[len(b"hello-0"):])
        assert [(m.type_id, m.timestamp, m.payload) for m in parsed] == [
            (t, (ts - 1000) & 0xFFFFFFFF, body) for t, ts, body, _ in messages]
        for sink in sinks:
            sink.close()
        hub.close()


def test_a_reader_that_never_reads_skips_then_is_dropped_while_the_other_misses_nothing() -> None:
    with engine(2) as eng, tcp_pair(sndbuf=4096, rcvbuf=4096) as (s1, c1), tcp_pair() as (s2, c2):
        hub = eng.hub()
        group = eng.group()
        stalled = eng.sink(hub, 1, s1.fileno(), 200_000, 2)
        good = eng.sink(hub, 2, s2.fileno(), 8 << 20, 2)
        stalled.join(group, 1, 0)
        good.join(group, 1, 0)
        got = bytearray()
        reader = threading.Thread(target=lambda: got.extend(read_all(c2, 1.0)))
        reader.start()
        want = bytearray()
        for i in range(200):
            key = i % 20 == 0
            body = payload(i, 30000 if key else 8000)
            send(group, VIDEO, 40 * i, body, key)
            want += expected(VIDEO, 40 * i, body, 1, 0)
        reader.join()
        assert bytes(got) == bytes(want)
        deadline = time.monotonic() + 5
        tokens: set[int] = set()
        while time.monotonic() < deadline and not stalled.poll()[1] & DROPPED:
            select.select([hub.fileno()], [], [], 0.1)
            tokens.update(hub.take())
        queued, state, skips = stalled.poll()
        assert state & DROPPED and skips == 3 and queued == 0  # 2 skips, the 3rd overflow drops
        tokens.update(hub.take())
        assert 1 in tokens  # Python was told (no polling per message)
        st = stalled.stats()  # (an overflow on a keyframe resumes at once: nothing skipped)
        assert st["dropped"] and st["queued"] == 0
        assert good.stats()["skips"] == 0
        stalled.close()
        good.close()


def test_control_units_are_never_skipped_and_too_many_drop_the_reader() -> None:
    with engine(2) as eng, tcp_pair(sndbuf=4096, rcvbuf=4096) as (s1, c1):
        hub = eng.hub()
        sink = eng.sink(hub, 7, s1.fileno(), 100_000, 3)
        for _ in range(15):  # 150 KB of control: more than the limit, less than twice it
            assert sink.unit(b"c" * 10_000, False, True)
        eng.sync()
        queued, state, skips = sink.poll()
        assert state == 0 and skips == 0 and queued > 0
        for _ in range(10):
            sink.unit(b"c" * 10_000, False, True)
        eng.sync()
        assert sink.poll()[1] & DROPPED
        sink.close()


def test_nothing_is_written_after_close_returns() -> None:
    with engine(2) as eng, tcp_pair() as (s1, c1):
        hub = eng.hub()
        group = eng.group()
        sink = eng.sink(hub, 1, s1.fileno(), 8 << 20, 3)
        sink.join(group, 1, 0)
        stop = threading.Event()

        def producer() -> None:
            i = 0
            while not stop.is_set():
                send(group, AUDIO, i, b"\xaf\x01" + bytes(2000), True)
                i += 1
                time.sleep(0.0002)

        t = threading.Thread(target=producer)
        t.start()
        time.sleep(0.2)
        sink.close()
        c1.setblocking(False)
        before = 0
        while True:  # what was written before close returned
            try:
                chunk = c1.recv(1 << 20)
            except BlockingIOError:
                break
            before += len(chunk)
        time.sleep(0.3)
        try:
            after = len(c1.recv(1 << 20))
        except BlockingIOError:
            after = 0
        stop.set()
        t.join()
        assert before > 0 and after == 0
        assert sink.closed and sink.poll()[1] & CLOSED
        assert not sink.unit(b"x", False, True)  # refused after close


def test_finish_reports_once_everything_queued_is_written() -> None:
    with engine(2) as eng, tcp_pair(sndbuf=4096, rcvbuf=4096) as (s1, c1):
        hub = eng.hub()
        sink = eng.sink(hub, 3, s1.fileno(), 8 << 20, 3)
        for _ in range(20):
            sink.unit(b"m" * 20_000, True, False)
        sink.finish()
        eng.sync()
        assert not sink.poll()[1] & FINISHED  # 400 KB do not fit into the socket
        got = bytearray()
        stop = threading.Event()
        pumper = threading.Thread(target=pump, args=(sink, s1, hub, stop))
        pumper.start()
        got += read_all(c1, 0.5)
        stop.set()
        pumper.join()
        assert len(got) == 400_000
        assert sink.poll()[1] & FINISHED
        sink.close()


def test_engine_close_frees_open_sinks_and_later_calls_are_harmless() -> None:
    with tcp_pair() as (s1, c1):
        with engine(2) as eng:
            hub = eng.hub()
            group = eng.group()
            sinks = [eng.sink(hub, i, s1.fileno(), 1 << 20, 3) for i in range(6)]
            for s in sinks:
                s.join(group, 1, 0)
            for i in range(50):
                send(group, AUDIO, i, b"\xaf\x01" + bytes(500), True)
        # the engine is closed (threads joined): every sink closed with it
        assert all(s.closed for s in sinks)
        send(group, AUDIO, 99, b"\xaf\x01", True)
        for s in sinks:
            assert not s.unit(b"x", False, True)
            s.close()
        hub.close()
        hub.close()


def test_one_pool_for_every_holder_ending_with_the_last() -> None:
    assert sender_pool.acquire(2) is not None
    try:
        with sender_pool.lease(5) as again:
            assert again is sender_pool._engine and again.workers == 2  # the first decides
        assert not again.closed
    finally:
        sender_pool.release(again)
    assert again.closed and sender_pool._engine is None
