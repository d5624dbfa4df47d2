"""STUN for an ICE-lite, controlled agent, plus the RFC 7983 first-byte demux helpers.

Sans-IO: everything here works on ``bytes`` and explicit ``now`` timestamps; there are no
sockets and no event loop. STUN encoding and integrity checks use ``aioice.stun``
(0.13 API: ``parse_message`` checks FINGERPRINT, ``check_message_integrity(key)``,
``add_message_integrity(key)`` appends MESSAGE-INTEGRITY then FINGERPRINT), imported on first
use: the ``aioice`` package pulls in its whole ICE agent (dnspython, ifaddr), which a mux that
only routes by :func:`peek_username` and a server without viewers do not need.

Malformed input raises :class:`rtp.errors.ParseError` and nothing else.
"""

from __future__ import annotations

import collections
import ipaddress
import os
import struct
from typing import TYPE_CHECKING

from .errors import ParseError

if TYPE_CHECKING:
    from aioice import stun

__all__ = [
    "IceLite",
    "build_binding_request",
    "check_binding_response",
    "is_dtls",
    "is_rtcp",
    "is_rtp_or_rtcp",
    "is_stun",
    "peek_username",
]

_COOKIE = 0x2112A442
_HEADER = 20
_BINDING_REQUEST = 0x0001
_ATTR_USERNAME = 0x0006


# --- RFC 7983 demultiplexing -------------------------------------------------------------


def is_stun(data: bytes) -> bool:
    """True if the first byte is in 0..3 (STUN)."""
    return len(data) > 0 and data[0] <= 3


def is_dtls(data: bytes) -> bool:
    """True if the first byte is in 20..63 (DTLS)."""
    return len(data) > 0 and 20 <= data[0] <= 63


def is_rtp_or_rtcp(data: bytes) -> bool:
    """True if the first byte is in 128..191 (RTP or RTCP, version 2)."""
    return len(data) > 0 and 128 <= data[0] <= 191


def is_rtcp(data: bytes) -> bool:
    """True for RTP/RTCP data whose second byte (packet type) is in 192..223 (RTCP)."""
    return len(data) > 1 and 128 <= data[0] <= 191 and 192 <= data[1] <= 223


# --- cheap peeking -------------------------------------------------------------------------


def _check_header(data: bytes) -> int:
    """Validate the fixed STUN header; return the message type. Raises ParseError."""
    if len(data) < _HEADER:
        raise ParseError("stun-short", f"{len(data)} bytes")
    if data[0] & 0xC0:
        raise ParseError("stun-not-stun", "top bits of the message type are set")
    msg_type, length, cookie = struct.unpack_from("!HHI", data, 0)
    if cookie != _COOKIE:
        raise ParseError("stun-cookie", "bad magic cookie")
    if length % 4 or _HEADER + length != len(data):
        raise ParseError("stun-length", f"header says {length}, have {len(data) - _HEADER}")
    return msg_type


def _walk(data: bytes) -> tuple[int, bytes | None]:
    """Validate header and attribute TLVs; return (message type, first USERNAME value)."""
    msg_type = _check_header(data)
    pos = _HEADER
    end = len(data)
    username: bytes | None = None
    while pos < end:
        if pos + 4 > end:
            raise ParseError("stun-attr", "truncated attribute header")
        attr_type, attr_len = struct.unpack_from("!HH", data, pos)
        value_end = pos + 4 + attr_len
        if value_end > end:
            raise ParseError("stun-attr", "attribute overruns message")
        if attr_type == _ATTR_USERNAME and username is None:
            username = data[pos + 4 : value_end]
        pos = value_end + (-attr_len % 4)
    if pos != end:
        raise ParseError("stun-attr", "bad attribute padding")
    return msg_type, username


def peek_username(data: bytes) -> str | None:
    """Return the USERNAME of a STUN Binding request without verifying anything.

    Returns None for a well-formed STUN message that is not a Binding request or has no
    USERNAME. Raises ParseError for anything that is not well-formed STUN.
    Cheap: walks the attribute TLVs only (used by the mux to route by ufrag).
    """
    msg_type, username = _walk(data)
    if msg_type != _BINDING_REQUEST or username is None:
        return None
    try:
        return username.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("stun-username", "USERNAME is not UTF-8") from exc


def _parse(data: bytes) -> stun.Message:
    """``aioice.stun.parse_message`` with every failure mapped to ParseError."""
    from aioice import stun

    _walk(data)
    try:
        return stun.parse_message(data)
    except Exception as exc:  # aioice raises ValueError, struct.error, UnicodeDecodeError...
        reason = "stun-fingerprint" if "fingerprint" in str(exc) else "stun-malformed"
        raise ParseError(reason, str(exc)) from exc


# --- the ICE-lite agent --------------------------------------------------------------------


class IceLite:
    """ICE-lite, controlled side of one ICE session (one viewer).

    ``handle`` answers valid Binding requests (USERNAME ``local_ufrag:remote_ufrag``,
    MESSAGE-INTEGRITY keyed with ``local_pwd``) with a success response carrying
    XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT. Everything else is ignored
    (None) and counted in ``dropped[reason]``.

    Attributes:
        nominated: source address of the latest valid request with USE-CANDIDATE.
        last_valid: ``now`` of the latest valid request (consent freshness, RFC 7675; the
            server of an ICE-lite session only sees requests, so a viewer whose requests stop
            for the consent timeout has withdrawn its consent).
        dropped: counter of ignored messages by reason.
    """

    def __init__(self, local_ufrag: str, local_pwd: str, remote_ufrag: str) -> None:
        self.local_ufrag = local_ufrag
        self.local_pwd = local_pwd
        self.remote_ufrag = remote_ufrag
        self._key = local_pwd.encode("utf-8")
        self._username = f"{local_ufrag}:{remote_ufrag}"
        self.nominated: tuple[str, int] | None = None
        self.last_valid: float | None = None
        #: whether the latest valid request carried USE-CANDIDATE
        self.last_nominating = False
        self.dropped: collections.Counter[str] = collections.Counter()

    def restarted(self, local_ufrag: str, local_pwd: str, remote_ufrag: str) -> IceLite:
        """The agent after an ICE restart (new credentials on both sides): consent
        (``last_valid``) and the nominated address carry over until checks with the new
        credentials arrive, so media keeps flowing on the old path meanwhile."""
        agent = IceLite(local_ufrag, local_pwd, remote_ufrag)
        agent.nominated = self.nominated
        agent.last_valid = self.last_valid
        return agent

    def handle(self, data: bytes, addr: tuple[str, int], now: float) -> bytes | None:
        """Process one STUN datagram from ``addr`` received at ``now``.

        Returns the encoded Binding success response, or None when the message must be
        ignored. Raises ParseError for malformed STUN.
        """
        from aioice import stun

        msg = _parse(data)
        if msg.message_method != stun.Method.BINDING or msg.message_class != stun.Class.REQUEST:
            self.dropped["not-request"] += 1
            return None
        if msg.attributes.get("USERNAME") != self._username:
            self.dropped["username"] += 1
            return None
        if not msg.check_message_integrity(self._key):
            self.dropped["integrity"] += 1
            return None
        try:
            ipaddress.ip_address(addr[0])
        except ValueError as exc:
            raise ParseError("stun-addr", f"not an IP address: {addr[0]!r}") from exc
        self.last_valid = now
        self.last_nominating = "USE-CANDIDATE" in msg.attributes
        if self.last_nominating:
            self.nominated = (addr[0], addr[1])
        resp = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=msg.transaction_id,
        )
        resp.attributes["XOR-MAPPED-ADDRESS"] = (addr[0], addr[1])
        resp.add_message_integrity(self._key)
        return bytes(resp)


# --- client side (tests, benches) -----------------------------------------------------------


def build_binding_request(
    local_ufrag: str,
    remote_ufrag: str,
    remote_pwd: str,
    use_candidate: bool = True,
    transaction_id: bytes | None = None,
    *,
    priority: int = 0x6E7F1EFF,
    tie_breaker: int | None = None,
) -> bytes:
    """Build a Binding request as a controlling ICE agent (a browser) would send it.

    ``local_ufrag`` is the client's own ufrag, ``remote_ufrag``/``remote_pwd`` the server's:
    USERNAME is ``remote_ufrag:local_ufrag`` and MESSAGE-INTEGRITY is keyed with remote_pwd.
    """
    from aioice import stun

    msg = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.REQUEST,
        transaction_id=transaction_id or os.urandom(12),
    )
    msg.attributes["USERNAME"] = f"{remote_ufrag}:{local_ufrag}"
    msg.attributes["PRIORITY"] = priority
    msg.attributes["ICE-CONTROLLING"] = (
        tie_breaker if tie_breaker is not None else int.from_bytes(os.urandom(8), "big")
    )
    if use_candidate:
        msg.attributes["USE-CANDIDATE"] = None
    msg.add_message_integrity(remote_pwd.encode("utf-8"))
    return bytes(msg)


def check_binding_response(data: bytes, transaction_id: bytes, remote_pwd: str) -> tuple[str, int]:
    """Verify a Binding success response; return its XOR-MAPPED-ADDRESS.

    ``transaction_id`` is the request's; ``remote_pwd`` the server's ice-pwd.
    Raises ParseError ("stun-not-response", "stun-transaction", "stun-integrity",
    "stun-no-address", ...) when the response is not a valid answer to that request.
    """
    from aioice import stun

    msg = _parse(data)
    if msg.message_method != stun.Method.BINDING or msg.message_class != stun.Class.RESPONSE:
        raise ParseError("stun-not-response", repr(msg.message_class))
    if msg.transaction_id != transaction_id:
        raise ParseError("stun-transaction", "transaction id mismatch")
    if not msg.check_message_integrity(remote_pwd.encode("utf-8")):
        raise ParseError("stun-integrity", "MESSAGE-INTEGRITY mismatch")
    if "FINGERPRINT" not in msg.attributes:
        raise ParseError("stun-fingerprint", "no FINGERPRINT")
    mapped = msg.attributes.get("XOR-MAPPED-ADDRESS")
    if mapped is None:
        raise ParseError("stun-no-address", "no XOR-MAPPED-ADDRESS")
    return (str(mapped[0]), int(mapped[1]))
