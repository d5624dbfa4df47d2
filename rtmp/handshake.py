"""The RTMP handshake (C0/C1/C2 and S0/S1/S2), both roles, sans-IO.

The "simple" handshake of the RTMP specification (version 3): the server answers C0+C1 with
S0+S1+S2 at once (S1 carries zero version bytes, so clients such as FFmpeg and librtmp do
not ask for the Flash-era HMAC digest; S2 echoes C1) and then waits for C2. The client sends
C0+C1, waits for S0+S1+S2 and answers with C2 (an echo of S1).

Usage: ``receive_data(data)`` consumes bytes and returns what to send; once ``done`` is True,
``leftover`` holds bytes that arrived after the handshake (the start of the chunk stream).
Raises :class:`~rtmp.errors.RtmpError` (``handshake-version``) for a C0/S0 other than 3 —
RTMPE (6) and garbage included — and ``handshake-done`` when fed after completion.
"""

from __future__ import annotations

import os

from .errors import RtmpError

__all__ = ["HANDSHAKE_SIZE", "RTMP_VERSION", "ClientHandshake", "ServerHandshake"]

RTMP_VERSION = 3
HANDSHAKE_SIZE = 1536


def _packet(epoch_ms: int) -> bytes:
    # time (4) | zero (4) | random (1528)
    return (epoch_ms & 0xFFFFFFFF).to_bytes(4, "big") + b"\x00\x00\x00\x00" + os.urandom(
        HANDSHAKE_SIZE - 8
    )


class ServerHandshake:
    """Server side: ``receive_data`` returns S0+S1+S2 once C0+C1 are in, then ``b""``."""

    def __init__(self, epoch_ms: int = 0) -> None:
        self._buf = bytearray()
        self._s1 = _packet(epoch_ms)
        self._sent = False
        self.done = False
        self.leftover = b""

    def receive_data(self, data: bytes) -> bytes:
        if self.done:
            raise RtmpError("handshake-done", "handshake already complete")
        self._buf += data
        out = b""
        if not self._sent:
            if self._buf and self._buf[0] != RTMP_VERSION:
                raise RtmpError("handshake-version", f"C0 announces version {self._buf[0]}, not 3")
            if len(self._buf) < 1 + HANDSHAKE_SIZE:
                return b""
            c1 = bytes(self._buf[1:1 + HANDSHAKE_SIZE])
            del self._buf[:1 + HANDSHAKE_SIZE]
            out = bytes([RTMP_VERSION]) + self._s1 + c1
            self._sent = True
        if len(self._buf) >= HANDSHAKE_SIZE:  # C2: its content is not checked (as most servers)
            self.leftover = bytes(self._buf[HANDSHAKE_SIZE:])
            self._buf.clear()
            self.done = True
        return out


class ClientHandshake:
    """Client side: ``start()`` gives C0+C1; ``receive_data`` returns C2 once S0+S1+S2 are in."""

    def __init__(self, epoch_ms: int = 0) -> None:
        self._buf = bytearray()
        self._c1 = _packet(epoch_ms)
        self.done = False
        self.leftover = b""

    def start(self) -> bytes:
        return bytes([RTMP_VERSION]) + self._c1

    def receive_data(self, data: bytes) -> bytes:
        if self.done:
            raise RtmpError("handshake-done", "handshake already complete")
        self._buf += data
        if self._buf and self._buf[0] != RTMP_VERSION:
            raise RtmpError("handshake-version", f"S0 announces version {self._buf[0]}, not 3")
        if len(self._buf) < 1 + 2 * HANDSHAKE_SIZE:
            return b""
        s1 = bytes(self._buf[1:1 + HANDSHAKE_SIZE])
        self.leftover = bytes(self._buf[1 + 2 * HANDSHAKE_SIZE:])
        self._buf.clear()
        self.done = True
        return s1
