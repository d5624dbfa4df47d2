"""RTMP under a connection flood, with the server as the subsystem configures it (defaults of
``rtmp.max_connections_per_address`` and ``rtmp.setup_timeout``): 2,000 idle connections from
one address no longer take every slot from a legitimate player, and a client trickling one
byte per second is dropped at the setup deadline (it held its slot for 31 s)."""

from __future__ import annotations

import time

import trio

from rtmp.chunk import MessageType
from rtmp.connection import MediaReceived
from trio_core.config.settings import load_config
from trio_core.rtmp.client import RtmpClient
from trio_core.rtmp.server import RtmpServer
from trio_core.rtmp.subsystem import rtmp_server


def configured_server(**env: str) -> RtmpServer:
    return rtmp_server(load_config(None, env={"CORE_RTMP_ADDRESS": "127.0.0.1:0", **env}))


async def test_an_idle_flood_from_one_address_does_not_lock_out_a_player() -> None:
    server = configured_server()
    flood: list[trio.SocketStream] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        port = server.ports[0]
        publisher = await RtmpClient.open("127.0.0.1", port, "live")
        await publisher.publish("x")
        await publisher.send_media(MessageType.VIDEO, 0, b"\x17\x00\x00\x00\x00cfg")
        await publisher.send_media(MessageType.VIDEO, 0, b"\x17\x01" + bytes(100))
        try:
            with trio.fail_after(60):
                for _ in range(2000):  # another host (127.0.0.2) that connects and idles
                    flood.append(await trio.open_tcp_stream("127.0.0.1", port,
                                                            local_address="127.0.0.2"))
                while server.connections + server.refused_connections < 2001:
                    await trio.sleep(0.05)
            assert server.connections <= 1 + server.max_connections_per_address
            assert server.refused_connections >= 2000 - server.max_connections_per_address
            player = await RtmpClient.open("127.0.0.1", port, "live")
            await player.play("x")
            with trio.fail_after(10):
                got: list[MediaReceived] = []
                while not got:
                    got = [e for e in await player.receive_events()
                           if isinstance(e, MediaReceived)]
            assert got[0].payload.startswith(b"\x17")
        finally:
            for stream in flood:
                await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_client_trickling_one_byte_a_second_is_dropped_at_the_setup_deadline() -> None:
    assert configured_server().setup_timeout == 10  # the default
    server = configured_server(CORE_RTMP_SETUP_TIMEOUT="3")  # a short one keeps the test quick
    deadline = server.setup_timeout
    assert deadline == 3
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        stream = await trio.open_tcp_stream("127.0.0.1", server.ports[0],
                                            local_address="127.0.0.3")
        started = time.monotonic()
        closed = False
        with trio.move_on_after(deadline + 5):
            await stream.send_all(b"\x03")
            while not closed:
                with trio.move_on_after(1.0):
                    try:
                        closed = await stream.receive_some(1) == b""
                    except trio.BrokenResourceError:
                        closed = True
                if not closed:
                    try:
                        await stream.send_all(b"\x00")
                    except trio.BrokenResourceError:
                        closed = True
        held = time.monotonic() - started
        await stream.aclose()
        assert closed, f"still connected after {held:.1f} s"
        assert deadline - 0.5 <= held <= deadline + 2.5
        assert server.connections == 0
        nursery.cancel_scope.cancel()
