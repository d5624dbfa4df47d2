"""100 SRT callers sending and closing together: more sockets are ready at once than the
server's epoll array holds (64). The server must serve them all and stay up (it died with
``IndexError: invalid index`` in ``step()``: every publisher dropped, every new caller refused
until a restart). Real libsrt, callers in this process."""

from __future__ import annotations

import ctypes
import sys
import time

import pytest
import trio

from trio_core.srt import binding
from trio_core.srt.hub import Hub
from trio_core.srt.server import SrtServer

CALLERS = 100


def _lib() -> binding.LibSrt:
    try:
        return binding.load()
    except binding.SrtUnavailable as exc:  # pragma: no cover - the machine lacks libsrt
        pytest.skip(f"libsrt is not installed: {exc}")


async def test_a_hundred_callers_sending_and_closing_at_once() -> None:
    lib = _lib()
    server = SrtServer(address="127.0.0.1:0", hub=Hub(max_connections=CALLERS + 10), lib=lib)
    lib.startup()
    socks: list[int] = []
    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.run)
            limiter = trio.CapacityLimiter(16)

            async def connect(i: int) -> None:
                sock = lib.create_socket()
                socks.append(sock)
                lib.set_str(sock, binding.SRTO_STREAMID, f"cam{i},mode:publish")
                await trio.to_thread.run_sync(lib.connect, sock, "127.0.0.1", port,
                                              limiter=limiter)

            with trio.fail_after(60):
                async with trio.open_nursery() as connecting:
                    for i in range(CALLERS):
                        connecting.start_soon(connect, i)
                while len(server.snapshot.publishers) < CALLERS:
                    await trio.sleep(0.05)

            def burst() -> None:
                # every caller sends, then every caller closes, while this thread holds the
                # GIL for 0.5 s: libsrt's own threads mark all of them ready meanwhile, as when
                # the server's I/O thread is busy the moment 100 callers go away
                payload = b"\x47" + bytes(1315)
                interval = sys.getswitchinterval()
                sys.setswitchinterval(5.0)
                try:
                    for sock in socks:
                        lib.sendmsg(sock, payload)
                    for sock in socks:
                        lib.close(sock)
                    socks.clear()
                    until = time.perf_counter() + 0.5
                    while time.perf_counter() < until:
                        pass
                finally:
                    sys.setswitchinterval(interval)

            await trio.to_thread.run_sync(burst)

            def stops() -> int:
                return sum(e.handler == "PUBLISH" and e.status == "STOP" for e in server.events)

            # the snapshot changes in the I/O thread at once; its events reach trio a moment later
            with trio.move_on_after(30):
                while server.snapshot.publishers or stops() < CALLERS:
                    await trio.sleep(0.05)
            assert not server.snapshot.publishers
            assert (stops(), server.events_lost) == (CALLERS, 0)

            # still serving: a new publisher and a subscriber get through and data flows
            pub, sub = lib.create_socket(), lib.create_socket()
            socks += [pub, sub]
            lib.set_str(pub, binding.SRTO_STREAMID, "after,mode:publish")
            await trio.to_thread.run_sync(lib.connect, pub, "127.0.0.1", port)
            with trio.fail_after(10):
                while "after" not in server.snapshot.publishers:
                    await trio.sleep(0.05)
            lib.set_str(sub, binding.SRTO_STREAMID, "after")
            await trio.to_thread.run_sync(lib.connect, sub, "127.0.0.1", port)
            with trio.fail_after(10):
                while not server.snapshot.subscribers.get("after"):
                    await trio.sleep(0.05)
            lib.set_bool(sub, binding.SRTO_RCVSYN, False)
            buf = ctypes.create_string_buffer(binding.MAX_PAYLOAD + 44)
            got = 0
            with trio.fail_after(10):
                while got <= 0:
                    lib.sendmsg(pub, b"\x47" + bytes(187))
                    await trio.sleep(0.05)
                    try:
                        got = lib.recvmsg(sub, buf)
                    except binding.SrtError as exc:
                        assert exc.would_block, exc
            nursery.cancel_scope.cancel()
    finally:
        for sock in socks:
            lib.close(sock)
        lib.cleanup()
