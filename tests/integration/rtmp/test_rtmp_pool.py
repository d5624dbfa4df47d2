"""RTMP players written by the native sender pool (issue 23), with 2 worker threads.

A real FFmpeg publisher (lavfi, libx264 + AAC) into :class:`RtmpServer`; players are FFmpeg
readers that decode and socket players that parse every message. Every player gets the same
complete stream in order (a contiguous run of the publisher's messages from its GOP start
to the end of the stream, timestamps consistent); a player that never reads is skipped, then
dropped, by the relay policy without disturbing the others; players join and leave while the
stream runs; the server stops while sending (no crash, nothing left open, the pool ends). The
same scenario through the Python path (``native=False``) gives every player the same
messages, byte for byte.
"""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import pytest
import trio

from rtmp.chunk import MessageType
from rtmp.connection import MediaReceived
from rtp import sender_pool
from tests.helpers.leaks import open_fds
from tests.helpers.rtmp import play_frames, publisher_argv, start_ffmpeg
from trio_core.rtmp.client import RtmpClient
from trio_core.rtmp.server import RtmpServer

pytestmark = pytest.mark.skipif(not sender_pool.SINKS, reason="needs the C fan-out (a compiler)")

Msg = tuple[int, int, str]  # type, timestamp, payload digest


async def collect(port: int, out: list[Msg], *, limit: int = 0) -> None:
    """Play ``/live/x`` and record every media message until the server ends the stream
    (or ``limit`` messages)."""
    client = await RtmpClient.open("127.0.0.1", port, "live", timeout=20)
    try:
        await client.play("x", timeout=20)
        while True:
            try:
                events = await client.receive_events()
            except (EOFError, trio.BrokenResourceError):
                return
            for ev in events:
                if isinstance(ev, MediaReceived):
                    out.append((ev.type_id, ev.timestamp, hashlib.sha1(ev.payload).hexdigest()))
            if limit and len(out) >= limit:
                return
    finally:
        await client.aclose()


def assert_contiguous(ref: list[Msg], got: list[Msg], *, to_the_end: bool = True) -> None:
    """``got`` starts with the decoder configurations (video, audio) and goes on with a
    contiguous run of ``ref``'s media (rebased timestamps: equal differences)."""
    assert [m[2] for m in got[:2]] == [m[2] for m in ref[:2]], "no decoder configuration first"
    ref, got = ref[2:], got[2:]
    assert got, "the player got nothing"
    digests = [m[2] for m in ref]
    start = digests.index(got[0][2])
    run = ref[start:start + len(got)]
    assert [m[2] for m in got] == [m[2] for m in run]
    assert [m[0] for m in got] == [m[0] for m in run]
    t0, r0 = got[0][1], run[0][1]
    assert [m[1] - t0 for m in got] == [m[1] - r0 for m in run]
    if to_the_end:
        assert start + len(got) == len(ref), "the player missed the end of the stream"


@pytest.mark.slow
async def test_players_on_two_workers_get_the_whole_stream_a_stalled_one_is_dropped(
        ffmpeg: str) -> None:
    server = RtmpServer(host="127.0.0.1", port=0, sender_workers=2, max_queue_bytes=400_000,
                        max_skips=1)
    players: list[list[Msg]] = [[] for _ in range(10)]
    churn: list[list[Msg]] = []
    decoded: list[tuple[int, int, bytes]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        assert server.engine is not None and server.engine.workers == 2
        port = server.ports[0]
        url = f"rtmp://127.0.0.1:{port}/live/x"
        await start_ffmpeg(nursery, publisher_argv(ffmpeg, url, seconds=7, size="640x360",
                                                   extra=("-b:v", "2M")))
        with trio.fail_after(20):
            while not (server.channels() and server.registry.get("/live/x").gop_bytes):
                await trio.sleep(0.05)
        # a player that never reads: tiny receive buffer, its queue overflows
        stalled = await RtmpClient.open("127.0.0.1", port, "live")
        stalled.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await stalled.play("x")
        async with trio.open_nursery() as watchers:
            for out in players:
                watchers.start_soon(collect, port, out)

            async def decode() -> None:
                decoded.append(await play_frames(ffmpeg, url, 30))

            for _ in range(2):
                watchers.start_soon(decode)

            async def join_and_leave() -> None:  # players come and go while it streams
                for _ in range(8):
                    churn.append([])
                    await collect(port, churn[-1], limit=40)
                    await trio.sleep(0.1)

            watchers.start_soon(join_and_leave)
        with trio.fail_after(10):  # the stalled player was dropped, its connection ended
            while server.connections > 1:
                await trio.sleep(0.05)
        with pytest.raises((EOFError, trio.BrokenResourceError)):
            while True:
                await stalled.receive_events()
        await stalled.aclose()
        stats = server.relay_stats()
        assert stats.drops == 1 and stats.skips >= 1, stats
        nursery.cancel_scope.cancel()
    ref = max(players, key=len)
    assert len(ref) > 200  # ~6 s of 25 fps video and 47 audio frames/s
    for out in players:
        assert_contiguous(ref, out)
        assert out[2][0] == MessageType.VIDEO  # starts at the keyframe of the cached GOP
    assert len(churn) == 8
    for out in churn:
        assert len(out) >= 40
        assert_contiguous(ref, out, to_the_end=False)
    for rc, frames, err in decoded:
        assert rc == 0 and frames >= 100, err[-2000:]
    assert sender_pool._engine is None  # the server's scope ended: so did the pool


async def synthetic_run(native: bool) -> tuple[list[Any], int, dict[str, Any]]:
    """One publisher of a fixed message list (keyframes, audio, a jump to extended
    timestamps, a codec change), one player that joined before the first keyframe; what
    the player received (every media message, every byte) and the server's player stats."""
    server = RtmpServer(host="127.0.0.1", port=0, sender_workers=2, native=native)
    got: list[Any] = []
    received = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        assert (server.engine is not None) == native
        port = server.ports[0]
        pub = await RtmpClient.open("127.0.0.1", port, "live")
        await pub.publish("x")
        await pub.send_media(MessageType.VIDEO, 0, b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f" + bytes(20))
        await pub.send_media(MessageType.AUDIO, 0, b"\xaf\x00\x12\x10")
        player = await RtmpClient.open("127.0.0.1", port, "live")
        await player.play("x")
        ts = 1000
        for i in range(400):
            if i == 300:
                ts = 0xFFFFFF - 2000  # extended timestamps from here on
            if i == 350:  # a new decoder configuration reaches the started player
                await pub.send_media(MessageType.VIDEO, ts, b"\x17\x00\x00\x00\x00\x02" + bytes(30))
            key = i % 50 == 0
            body = (b"\x17\x01" if key else b"\x27\x01") + bytes([i & 0xFF]) * (
                30000 if key else 6000 + 37 * i)
            await pub.send_media(MessageType.VIDEO, ts, body)
            await pub.send_media(MessageType.AUDIO, ts + 3, b"\xaf\x01" + bytes([i & 0xFF]) * 300)
            ts += 40
            if i % 20 == 0:
                await trio.sleep(0.01)
        with trio.fail_after(10):
            while server.registry.get("/live/x").messages_in < 803:
                await trio.sleep(0.02)
        stats = server.stats()["channels"][0]["players"][0]
        await pub.aclose()  # the stream ends: the player gets the rest, then the end
        with trio.fail_after(20):
            while True:
                try:
                    events = await player.receive_events()
                except (EOFError, trio.BrokenResourceError):
                    break
                got += [(e.type_id, e.stream_id, e.timestamp, e.payload) for e in events
                        if isinstance(e, MediaReceived)]
        received = player.bytes_received
        await player.aclose()
        nursery.cancel_scope.cancel()
    return got, received, stats


async def test_the_native_and_python_paths_send_the_same_bytes() -> None:
    native, native_bytes, native_stats = await synthetic_run(True)
    python, python_bytes, python_stats = await synthetic_run(False)
    assert len(native) == 803 and native[0][0] == MessageType.VIDEO
    assert native == python
    assert native_bytes == python_bytes
    assert native_stats["skips"] == python_stats["skips"] == 0
    assert max(m[2] for m in native) > 0xFFFFFF  # the extended timestamps were exercised


async def test_stopping_the_server_while_it_sends_leaves_nothing() -> None:
    before = open_fds()
    server = RtmpServer(host="127.0.0.1", port=0, sender_workers=2)
    clients: list[RtmpClient] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        port = server.ports[0]
        pub = await RtmpClient.open("127.0.0.1", port, "live")
        await pub.publish("x")
        clients.append(pub)
        for _ in range(12):
            c = await RtmpClient.open("127.0.0.1", port, "live")
            await c.play("x")
            clients.append(c)

        async def publish() -> None:
            ts = 0
            while True:
                await pub.send_media(MessageType.VIDEO, ts, b"\x17\x01" + bytes(50000))
                ts += 40

        async def read(c: RtmpClient) -> None:
            try:
                while await c.stream.receive_some(1 << 16):
                    pass
            except trio.BrokenResourceError:
                pass

        async with trio.open_nursery() as load:
            load.start_soon(publish)
            for c in clients[1:]:
                load.start_soon(read, c)
            with trio.fail_after(10):
                while server.stats()["channels"][0]["players"][0]["bytes_sent"] < 2_000_000:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()  # the server stops while the pool sends
            load.cancel_scope.cancel()
    for c in clients:
        await c.aclose()
    assert server.connections == 0 and server.channels() == []
    assert sender_pool._engine is None
    assert open_fds() <= before  # no connection, listener or eventfd left open
