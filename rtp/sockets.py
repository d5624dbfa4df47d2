"""Plain non-blocking UDP sockets for the trio shells (Source, UdpMux).

The shells wait with ``trio.lowlevel.wait_readable`` and then drain with the stdlib
``recvfrom`` until ``BlockingIOError``, and send with a plain non-blocking ``sendto``:
per packet this is several times cheaper than ``await`` on a trio socket (see DESIGN.md).
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import NoReturn

import trio

__all__ = ["RECV_SIZE", "YIELD_AFTER", "close_udp_socket", "is_wildcard", "local_addresses",
           "open_udp_socket", "receive_datagrams"]

#: Larger than any datagram we accept (FFmpeg sends <= 1200 bytes, browsers <= MTU).
RECV_SIZE = 2048
BUFFER_BYTES = 4 << 20
#: A reader draining a busy socket yields to other tasks after this much work (seconds).
YIELD_AFTER = 0.002


def _grow_buffer(sock: socket.socket, option: int, force: int | None, size: int) -> None:
    """Best effort: raise a socket buffer (the *FORCE variants need root)."""
    for opt in (force, option):
        if opt is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
            return
        except OSError:
            continue


def is_wildcard(host: str) -> bool:
    """True for an all-interfaces bind address (``0.0.0.0``, ``::``, empty)."""
    return host in ("", "0.0.0.0", "::", "[::]")


def local_addresses(host: str) -> list[str]:
    """The interface addresses a wildcard ``host`` stands for: IPv4 ones for ``0.0.0.0``,
    IPv6 and IPv4 ones for ``::`` (link-local IPv6 skipped: it needs a scope per peer)."""
    import psutil  # only needed when bound to all interfaces

    want_v6 = ":" in host
    found: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET:
                ip = a.address
            elif a.family == socket.AF_INET6 and want_v6:
                ip = a.address.split("%", 1)[0]
                if ip.lower().startswith("fe80:"):
                    continue
            else:
                continue
            if ip not in found:
                found.append(ip)
    return found


def open_udp_socket(host: str, port: int = 0, *, buffer_bytes: int = BUFFER_BYTES
                    ) -> socket.socket:
    """A bound, non-blocking UDP socket (IPv6 when ``host`` has a ``:``) with large
    send/receive buffers.

    The socket is closed again if binding fails; the caller owns it otherwise.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6 and not is_wildcard(host):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        _grow_buffer(sock, socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None),
                     buffer_bytes)
        _grow_buffer(sock, socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None),
                     buffer_bytes)
        sock.bind((host.strip("[]"), port))
    except BaseException:
        sock.close()
        raise
    return sock


def close_udp_socket(sock: socket.socket) -> None:
    """Wake any task waiting on ``sock`` (it gets ClosedResourceError) and close it."""
    trio.lowlevel.notify_closing(sock)
    sock.close()


async def receive_datagrams(sock: socket.socket,
                            on_datagram: Callable[[bytes, tuple[str, int], float], None],
                            dropped: Counter[str]) -> NoReturn:
    """Hand every datagram arriving on ``sock`` to ``on_datagram(data, addr, now)``, forever.

    Waits with ``trio.lowlevel.wait_readable`` and drains with the plain ``recvfrom`` until
    ``BlockingIOError``; ``now`` is ``trio.current_time()`` when the batch began. A receive
    error is counted in ``dropped["recv-error"]``. A long batch (a keyframe burst fanned out
    to many viewers, many DTLS handshakes at once) yields after ``YIELD_AFTER`` seconds of
    work so other tasks keep running. Only one task may run this per socket.

    Cancellation: ends only by cancellation (or ``ClosedResourceError`` when the socket is
    closed under it); the socket stays open, its owner closes it.
    """
    recvfrom = sock.recvfrom
    clock = time.perf_counter
    while True:
        await trio.lowlevel.wait_readable(sock)
        now = trio.current_time()
        yield_at = clock() + YIELD_AFTER
        while True:
            try:
                data, addr = recvfrom(RECV_SIZE)
            except BlockingIOError:
                break
            except OSError:
                dropped["recv-error"] += 1
                break
            on_datagram(data, addr, now)
            if clock() > yield_at:
                await trio.lowlevel.checkpoint()
                now = trio.current_time()
                yield_at = clock() + YIELD_AFTER
