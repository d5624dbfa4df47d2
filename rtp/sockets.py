"""Plain non-blocking UDP sockets for the trio shells (Source, UdpMux).

The shells wait with ``trio.lowlevel.wait_readable`` and then drain with the stdlib
``recvfrom`` until ``BlockingIOError``, and send with a plain non-blocking ``sendto``:
per packet this is several times cheaper than ``await`` on a trio socket (see DESIGN.md).
"""

from __future__ import annotations

import socket

import trio

__all__ = ["RECV_SIZE", "YIELD_AFTER", "close_udp_socket", "open_udp_socket"]

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


def open_udp_socket(host: str, port: int = 0, *, buffer_bytes: int = BUFFER_BYTES
                    ) -> socket.socket:
    """A bound, non-blocking IPv4 UDP socket with large send/receive buffers.

    The socket is closed again if binding fails; the caller owns it otherwise.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        _grow_buffer(sock, socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None),
                     buffer_bytes)
        _grow_buffer(sock, socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None),
                     buffer_bytes)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def close_udp_socket(sock: socket.socket) -> None:
    """Wake any task waiting on ``sock`` (it gets ClosedResourceError) and close it."""
    trio.lowlevel.notify_closing(sock)
    sock.close()
