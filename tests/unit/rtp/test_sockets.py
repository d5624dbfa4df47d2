"""rtp.sockets: wildcard hosts, the addresses a bind covers, UDP sockets and the receive loop."""

from __future__ import annotations

import collections
import socket

import trio

from rtp.sockets import (
    close_udp_socket,
    is_wildcard,
    local_addresses,
    open_udp_socket,
    receive_datagrams,
)


def test_wildcards_and_local_addresses() -> None:
    assert is_wildcard("0.0.0.0") and is_wildcard("::")
    assert not is_wildcard("127.0.0.1") and not is_wildcard("::1")
    v4 = local_addresses("0.0.0.0")
    assert "127.0.0.1" in v4 and all(":" not in ip for ip in v4)
    both = local_addresses("::")
    assert set(v4) <= set(both)
    assert not any(ip.lower().startswith("fe80:") for ip in both)


async def test_datagrams_reach_the_receive_loop_with_their_sender() -> None:
    sock = open_udp_socket("127.0.0.1")
    port = sock.getsockname()[1]
    assert port > 0 and sock.getblocking() is False
    got: list[tuple[bytes, tuple[str, int]]] = []
    dropped: collections.Counter[str] = collections.Counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_datagrams, sock,
                               lambda data, addr, now: got.append((data, addr)), dropped)
            for payload in (b"one", b"two"):
                sender.sendto(payload, ("127.0.0.1", port))
            with trio.fail_after(5):
                while len(got) < 2:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert got == [(b"one", sender.getsockname()), (b"two", sender.getsockname())]
    assert dropped == {}
    close_udp_socket(sock)
    assert sock.fileno() == -1
