"""SRT connections per client address (``srt.max_connections_per_address``, default as
configured): one address cannot take more than its share of the server's connections; the
extra callers are refused (LIMIT, SRT reject 1429) and callers from elsewhere still get in.
Real libsrt, callers in this process bound to other loopback addresses."""

from __future__ import annotations

import pytest
import trio

from trio_core.config.settings import load_config
from trio_core.srt import binding
from trio_core.srt.hub import Hub, peer_host
from trio_core.srt.server import SrtServer
from trio_core.srt.subsystem import OWN_ADDRESSES


async def test_one_address_gets_its_share_and_others_still_get_in() -> None:
    try:
        lib = binding.load()
    except binding.SrtUnavailable as exc:  # pragma: no cover - the machine lacks libsrt
        pytest.skip(f"libsrt is not installed: {exc}")
    limit = load_config(None, env={})["srt.max_connections_per_address"]
    assert limit > 0
    server = SrtServer(address="127.0.0.1:0", lib=lib,
                       hub=Hub(max_per_address=limit, unlimited_addresses=OWN_ADDRESSES))
    lib.startup()
    socks: list[int] = []

    async def caller(streamid: str, source: str) -> bool:
        sock = lib.create_socket()
        socks.append(sock)
        lib.set_str(sock, binding.SRTO_STREAMID, streamid)
        lib.bind(sock, source, 0)
        try:
            await trio.to_thread.run_sync(lib.connect, sock, "127.0.0.1", port)
        except binding.SrtError:
            return False
        return True

    def held_by(host: str) -> int:
        return sum(1 for p in server.snapshot.peers.values() if peer_host(p) == host)

    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.run)
            assert await caller("live,mode:publish", "127.0.0.1")
            refused = 0
            with trio.fail_after(60):
                for _ in range(limit + 10):
                    before = held_by("127.0.0.2")
                    if await caller("live", "127.0.0.2"):
                        while held_by("127.0.0.2") == before:  # accepted by the I/O thread
                            await trio.sleep(0.01)
                    else:
                        refused += 1
            assert held_by("127.0.0.2") == limit and refused == 10
            limits = [e for e in server.events if e.status == "LIMIT"]
            assert limits and "from this address" in limits[-1].message
            assert await caller("live", "127.0.0.3")  # someone else still gets in
            with trio.fail_after(10):
                while held_by("127.0.0.3") == 0:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    finally:
        for sock in socks:
            lib.close(sock)
        lib.cleanup()
