"""The RTMP handshake (C0/C1/C2 and S0/S1/S2), both roles, sans-IO.

Server: when C1 carries a client version (bytes 4–7 non-zero) and a valid HMAC-SHA256
digest (the Flash-era "complex" handshake, at either of the two digest positions), the
server answers in kind as datarhei Core (joy4) does: S1 with a server version and its own
digest, S2 signed with a key derived from the client's digest — clients such as FFmpeg
(when playing) verify both. Otherwise it uses the simple handshake of the RTMP
specification: S1 with zero version bytes and S2 echoing C1 (where Core refuses a C1 whose
digest does not verify, this falls back to simple). It then waits for C2, whose content is
not checked. The client role sends a simple C0+C1 and answers S1 with C2 = S1.

Usage: ``receive_data(data)`` consumes bytes and returns what to send; once ``done`` is True,
``leftover`` holds bytes that arrived after the handshake (the start of the chunk stream).
Raises :class:`~rtmp.errors.RtmpError` (``handshake-version``) for a C0/S0 other than 3 —
RTMPE (6) and garbage included — and ``handshake-done`` when fed after completion.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from .errors import RtmpError

__all__ = ["HANDSHAKE_SIZE", "RTMP_VERSION", "ClientHandshake", "ServerHandshake",
           "find_digest"]

RTMP_VERSION = 3
HANDSHAKE_SIZE = 1536
SERVER_VERSION = 0x0D0E0A0D  # what joy4 (Core) announces

_KEY_TAIL = bytes([
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
])
CLIENT_KEY = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
SERVER_KEY = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL
CLIENT_PARTIAL_KEY = CLIENT_KEY[:30]
SERVER_PARTIAL_KEY = SERVER_KEY[:36]


def _digest_pos(packet: bytes, base: int) -> int:
    return sum(packet[base:base + 4]) % 728 + base + 4


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _digest_at(packet: bytes, pos: int, key: bytes) -> bytes:
    return _hmac(key, packet[:pos] + packet[pos + 32:])


def find_digest(packet: bytes, key: bytes) -> int | None:
    """Position of a valid digest in a C1/S1 (base 772 first, then 8, as joy4), or None."""
    for base in (772, 8):
        pos = _digest_pos(packet, base)
        if hmac.compare_digest(packet[pos:pos + 32], _digest_at(packet, pos, key)):
            return pos
    return None


def _complex_reply(c1: bytes, epoch_ms: int) -> bytes | None:
    """S1+S2 for a C1 carrying a valid client digest, else None."""
    if c1[4:8] == b"\x00\x00\x00\x00":
        return None
    pos = find_digest(c1, CLIENT_PARTIAL_KEY)
    if pos is None:
        return None
    s1 = bytearray((epoch_ms & 0xFFFFFFFF).to_bytes(4, "big") + SERVER_VERSION.to_bytes(4, "big")
                   + os.urandom(HANDSHAKE_SIZE - 8))
    spos = _digest_pos(bytes(s1), 8)
    s1[spos:spos + 32] = _digest_at(bytes(s1), spos, SERVER_PARTIAL_KEY)
    key = _hmac(SERVER_KEY, c1[pos:pos + 32])
    s2 = os.urandom(HANDSHAKE_SIZE - 32)
    return bytes(s1) + s2 + _hmac(key, s2)


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
        self._epoch_ms = epoch_ms
        self._sent = False
        self.complex = False  # answered with the digest handshake
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
            reply = _complex_reply(c1, self._epoch_ms)
            self.complex = reply is not None
            out = bytes([RTMP_VERSION]) + (reply if reply is not None else self._s1 + c1)
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
