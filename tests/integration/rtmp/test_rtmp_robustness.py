"""Hostile and slow peers on a real RTMP server: garbage on the port, truncated handshakes,
huge chunk sizes, bogus AMF, a player that stops reading. Each is dropped with a log line;
a real FFmpeg stream and its player go on undisturbed."""

from __future__ import annotations

import contextlib
import logging
import os
import time

import pytest
import trio

from rtmp import amf0
from rtmp.chunk import Message, MessageType, encode_message
from rtmp.connection import ClientConnection
from tests.helpers.rtmp import play_frames, publisher_argv, start_ffmpeg
from trio_core.rtmp.client import RtmpClient, RtmpRefused
from trio_core.rtmp.server import RtmpServer


async def closed_by_server(stream: trio.SocketStream, timeout: float = 15.0) -> bool:
    """True when the server closes ``stream`` (EOF or reset) within ``timeout``."""
    with trio.move_on_after(timeout):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


async def handshaken(port: int) -> trio.SocketStream:
    """A raw connection that completed the handshake and sent ``connect``."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    client = ClientConnection()
    client.connect("live", f"rtmp://127.0.0.1:{port}/live")
    await stream.send_all(client.start())
    with trio.fail_after(10):
        while not client.connected:
            data = await stream.receive_some(65536)
            assert data
            client.receive_data(data)
            await stream.send_all(client.data_to_send())
    return stream


@pytest.mark.slow
async def test_garbage_is_dropped_and_other_streams_continue(ffmpeg: str, caplog) -> None:
    caplog.set_level(logging.INFO, logger="trio_core.rtmp")
    # idle 4 s: long enough that a publisher on a loaded machine is never taken for idle
    server = RtmpServer(host="127.0.0.1", port=0, idle_timeout=4.0, setup_timeout=6.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        port = server.ports[0]
        url = f"rtmp://127.0.0.1:{port}/live/x"
        await start_ffmpeg(nursery, publisher_argv(ffmpeg, url))
        with trio.fail_after(20):
            while server.channels() != ["/live/x"]:
                await trio.sleep(0.1)
        result: dict[str, object] = {}

        async def player() -> None:
            result["play"] = await play_frames(ffmpeg, url, 6)

        nursery.start_soon(player)

        # 1. random bytes instead of a handshake
        s1 = await trio.open_tcp_stream("127.0.0.1", port)
        await s1.send_all(b"\x16\x03\x01" + os.urandom(3000))
        # 2. a truncated handshake: C0 and half of C1, then silence
        s2 = await trio.open_tcp_stream("127.0.0.1", port)
        await s2.send_all(b"\x03" + os.urandom(700))
        # 3. a huge chunk size, then a message claiming 16 MiB
        s3 = await handshaken(port)
        huge = encode_message(Message(MessageType.SET_CHUNK_SIZE, 0, 0, b"\x7f\xff\xff\xff", 2), 4096)
        claim = b"\x06" + bytes(3) + (0xFFFFFF).to_bytes(3, "big") + b"\x09" + bytes(4)
        await s3.send_all(huge + claim + os.urandom(1000))
        # 4. bogus AMF in a command
        s4 = await handshaken(port)
        await s4.send_all(encode_message(Message(MessageType.COMMAND_AMF0, 0, 0,
                                                 b"\x02\x00\x04publ\x42", 3), 4096))
        # 5. a command before connect (valid handshake, then createStream)
        s5 = await trio.open_tcp_stream("127.0.0.1", port)
        c5 = ClientConnection()
        await s5.send_all(c5.start())
        with trio.fail_after(10):
            reply = b""
            while len(reply) < 3073:
                reply += await s5.receive_some(65536)
        c5.receive_data(reply)
        c2 = c5.data_to_send()
        await s5.send_all(c2 + encode_message(Message(
            MessageType.COMMAND_AMF0, 0, 0, amf0.encode_all("createStream", 2.0, None), 3), 128))
        # 6. connected, then only pings (keeps the idle timer happy) and never publishes/plays
        s6 = await handshaken(port)
        ping = encode_message(Message(MessageType.USER_CONTROL, 0, 0, b"\x00\x06\x00\x00\x00\x01", 2), 4096)

        async def pinger() -> None:
            try:
                while True:
                    await s6.send_all(ping)
                    await trio.sleep(0.5)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        nursery.start_soon(pinger)
        for stream in (s1, s2, s3, s4, s5, s6):
            assert await closed_by_server(stream), "the server kept a hostile connection open"
            await stream.aclose()

        with trio.fail_after(60):
            while "play" not in result:
                await trio.sleep(0.2)
        rc, frames, err = result["play"]  # type: ignore[misc]
        assert rc == 0, err[-2000:]
        assert frames >= 120, err[-2000:]  # 6 s at 25 fps, decoded while the garbage arrived
        assert server.channels() == ["/live/x"]
        nursery.cancel_scope.cancel()
    text = caplog.text
    assert "handshake-version" in text
    assert "nothing received for 4 s during the handshake" in text
    assert "message-size" in text
    assert "amf-marker" in text
    assert "not-connected" in text
    assert "no publish or play within 6 s" in text
    assert server.connections == 0


@pytest.mark.slow
async def test_slow_player_is_skipped_then_dropped_without_slowing_anyone(caplog) -> None:
    caplog.set_level(logging.INFO, logger="trio_core.rtmp")
    server = RtmpServer(host="127.0.0.1", port=0, max_queue_bytes=4 * 1024 * 1024, max_skips=2,
                        idle_timeout=30.0)
    frame = 32 * 1024
    count = 1500  # ~48 MiB: far beyond the kernel's socket buffers plus two full queues
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        port = server.ports[0]
        publisher = await RtmpClient.open("127.0.0.1", port, "live")
        await publisher.publish("x")
        await publisher.send_media(MessageType.VIDEO, 0, b"\x17\x00\x00\x00\x00cfg")
        await publisher.send_media(MessageType.VIDEO, 0, b"\x17\x01" + bytes(frame))
        stalled = await RtmpClient.open("127.0.0.1", port, "live")
        await stalled.play("x")  # ... and never reads again
        fast = await RtmpClient.open("127.0.0.1", port, "live")
        await fast.play("x")
        fast.conn.keep_media = False
        received = {"bytes": 0}

        async def drain() -> None:
            while True:
                try:
                    await fast.receive_events()
                except EOFError:
                    return
                received["bytes"] = fast.conn.media_bytes

        nursery.start_soon(drain)
        started = time.monotonic()
        for i in range(1, count):
            body = (b"\x17\x01" if i % 25 == 0 else b"\x27\x01") + bytes(frame)
            await publisher.send_media(MessageType.VIDEO, i * 40, body)
            await trio.sleep(0.004)  # ~8 MB/s: fast, but a reading player keeps up (0.5 s of slack)
        publish_seconds = time.monotonic() - started
        with trio.fail_after(30):
            while received["bytes"] < (count - 1) * (frame + 2):
                await trio.sleep(0.05)
        channel = server.registry.get("/live/x")
        assert channel is not None
        nursery.cancel_scope.cancel()
    # the fast player got every byte; the stalled one was skipped, then dropped
    assert received["bytes"] >= (count - 1) * (frame + 2)
    assert "too slow; skipping to the next keyframe" in caplog.text
    assert "dropped (too slow: 2 skips)" in caplog.text
    assert "it accepted nothing" not in caplog.text  # dropped at once, not after the send timeout
    assert publish_seconds < 30, publish_seconds  # the publisher never waited for the stalled player


async def test_refusals_reach_the_client() -> None:
    server = RtmpServer(host="127.0.0.1", port=0, token="tok")
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        port = server.ports[0]
        pub = await RtmpClient.open("127.0.0.1", port, "live")
        await pub.publish("x?token=tok")
        with pytest.raises(RtmpRefused) as info:
            second = await RtmpClient.open("127.0.0.1", port, "live")
            await second.publish("x/tok")
        assert info.value.code == "NetStream.Publish.BadName"
        for name, code in (("x?token=bad", "NetStream.Play.Failed"),
                           ("nothing/tok", "NetStream.Play.StreamNotFound")):
            player = await RtmpClient.open("127.0.0.1", port, "live")
            with pytest.raises(RtmpRefused) as info:
                await player.play(name)
            assert info.value.code == code
            await player.aclose()
        assert server.channels() == ["/live/x"]
        nursery.cancel_scope.cancel()


async def test_players_are_told_when_the_publisher_leaves() -> None:
    from rtmp.connection import MediaReceived, StatusReceived

    server = RtmpServer(host="127.0.0.1", port=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        port = server.ports[0]
        pub = await RtmpClient.open("127.0.0.1", port, "live")
        await pub.publish("x")
        await pub.send_media(MessageType.VIDEO, 1000, b"\x17\x00\x00\x00\x00cfg")
        await pub.send_media(MessageType.VIDEO, 1000, b"\x17\x01\x00\x00\x00key")
        player = await RtmpClient.open("127.0.0.1", port, "live")
        await player.play("x")
        await pub.send_media(MessageType.VIDEO, 1040, b"\x27\x01\x00\x00\x00p")
        with trio.fail_after(10):
            while not (stats := server.stats())["channels"] or \
                    stats["channels"][0]["messages_in"] < 3:
                await trio.sleep(0.05)
        [channel] = stats["channels"]
        assert channel["name"] == "/live/x" and channel["video_codec"] == "h264"
        assert len(channel["players"]) == 1 and stats["connections"] == 2
        await pub.aclose()
        seen: list[object] = []
        with trio.fail_after(15):
            while True:
                try:
                    seen += await player.receive_events()
                except EOFError:
                    break
        media = [(e.timestamp, e.payload) for e in seen if isinstance(e, MediaReceived)]
        assert media == [(0, b"\x17\x00\x00\x00\x00cfg"), (0, b"\x17\x01\x00\x00\x00key"),
                         (40, b"\x27\x01\x00\x00\x00p")]  # headers, keyframe, rebased times
        codes = [e.code for e in seen if isinstance(e, StatusReceived)]
        assert codes[-1] == "NetStream.Play.UnpublishNotify"
        with trio.fail_after(10):
            while server.connections:
                await trio.sleep(0.05)
        assert server.channels() == []
        nursery.cancel_scope.cancel()


async def test_cancelling_the_server_closes_listeners_and_connections() -> None:
    from tests.helpers.leaks import open_fds

    before = open_fds()
    server = RtmpServer(host="", port=0)  # all interfaces: one listener per address family
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        assert len(server.ports) == 2  # IPv4 and IPv6, each on its own ephemeral port
        reachable = []
        for host in ("127.0.0.1", "::1"):
            for port in server.ports:
                with contextlib.suppress(OSError):
                    await (await trio.open_tcp_stream(host, port)).aclose()
                    reachable.append((host, port))
        assert len(reachable) == 2, reachable
        (host4, port4), (host6, port6) = reachable
        pub = await RtmpClient.open(host4, port4, "live")
        await pub.publish("x")
        player = await RtmpClient.open(host6, port6, "live")
        await player.play("x")
        idle = await trio.open_tcp_stream(host6, port6)
        nursery.cancel_scope.cancel()
    for client in (pub, player):
        with trio.fail_after(5):
            try:
                while await client.stream.receive_some(65536):
                    pass
            except trio.BrokenResourceError:
                pass
        await client.aclose()
    await idle.aclose()
    assert server.connections == 0 and server.channels() == []
    assert open_fds() <= before  # no listener or connection socket left open
