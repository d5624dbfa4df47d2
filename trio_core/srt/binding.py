"""A small ctypes binding to libsrt (the reference SRT implementation, Debian's ``libsrt1.5``).

Only what the SRT server needs: sockets, bind/listen/accept, a listen callback (to accept
or reject a caller during the handshake, by stream id), socket options, non-blocking
``srt_recvmsg``/``srt_sendmsg``, SRT epoll and statistics.

:func:`load` finds the library once per process (checking that ``srt_startup`` works) and
raises :class:`SrtUnavailable` when it is missing or unusable. Users bracket their sockets
with :meth:`LibSrt.startup` / :meth:`LibSrt.cleanup` (counted by libsrt): after the last
cleanup libsrt's own threads (garbage collector, per-port send/receive workers) are gone. Every call that fails raises
:class:`SrtError` carrying libsrt's error code (``SRT_E*`` constants below), except the
non-blocking would-block cases, which the callers check through :attr:`SrtError.code`.

Thread-safety: libsrt itself is thread-safe; the last-error value is per thread. The calls
here do not block except :meth:`LibSrt.epoll_wait` (bounded by its timeout) and the
blocking-mode send/recv that the server never uses (it sets ``SRTO_RCVSYN``/``SRTO_SNDSYN``
to false on every socket). Cancellation: not applicable (plain synchronous functions).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import socket
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "LibSrt", "SrtError", "SrtUnavailable", "load", "sockaddr_to_str",
    "SRT_EPOLL_IN", "SRT_EPOLL_OUT", "SRT_EPOLL_ERR",
]

SRTSOCKET = ctypes.c_int32
SRT_INVALID_SOCK = -1
SRT_ERROR = -1

# socket options (SRT_SOCKOPT)
SRTO_SNDSYN = 1
SRTO_RCVSYN = 2
SRTO_FC = 4
SRTO_SNDBUF = 5
SRTO_RCVBUF = 6
SRTO_LINGER = 7
SRTO_STATE = 17
SRTO_SNDDATA = 19
SRTO_LATENCY = 23
SRTO_PASSPHRASE = 26
SRTO_PBKEYLEN = 27
SRTO_KMSTATE = 28
SRTO_TLPKTDROP = 31
SRTO_PEERVERSION = 35
SRTO_CONNTIMEO = 36
SRTO_RCVLATENCY = 43
SRTO_PEERLATENCY = 44
SRTO_STREAMID = 46
SRTO_PAYLOADSIZE = 49
SRTO_TRANSTYPE = 50
SRTO_ENFORCEDENCRYPTION = 53
SRTO_PEERIDLETIMEO = 55

SRTT_LIVE = 0

# epoll events
SRT_EPOLL_IN = 0x1
SRT_EPOLL_OUT = 0x4
SRT_EPOLL_ERR = 0x8
SRT_EPOLL_ENABLE_EMPTY = 1

# error codes (SRT_ERRNO)
SRT_ECONNREJ = 1002
SRT_ECONNLOST = 2001
SRT_ENOCONN = 2002
SRT_EINVSOCK = 5004
SRT_EASYNCSND = 6001
SRT_EASYNCRCV = 6002
SRT_ETIMEOUT = 6003
WOULD_BLOCK = (SRT_EASYNCSND, SRT_EASYNCRCV, SRT_ETIMEOUT)

# socket states (SRT_SOCKSTATUS)
SRTS_CONNECTED = 5
SRTS_BROKEN = 6

# predefined reject reasons (SRT_REJC_PREDEFINED + HTTP-like code), seen by the caller
SRT_REJX_BAD_REQUEST = 1400
SRT_REJX_FORBIDDEN = 1403
SRT_REJX_NOTFOUND = 1404
SRT_REJX_CONFLICT = 1409

LOG_CRIT = 2

LIBRARY_NAMES = ("libsrt.so.1.5", "libsrt-openssl.so.1.5", "libsrt-gnutls.so.1.5", "libsrt.so")

#: libsrt's default SRTO_RCVBUF in packets: the flight window a caller is granted is
#: min(SRTO_RCVBUF, SRTO_FC), so an SRTO_FC above it only sizes the receive loss list
DEFAULT_RCVBUF_PACKETS = 8192

MAX_PAYLOAD = 1456  # SRT_LIVE_MAX_PLSIZE; an mpegts payload is 1316


class SrtUnavailable(RuntimeError):
    """libsrt cannot be loaded (not installed) or initialised."""


class SrtError(OSError):
    """A libsrt call failed; ``code`` is libsrt's error code (``SRT_E*``)."""

    def __init__(self, call: str, code: int, message: str) -> None:
        super().__init__(f"{call}: {message} ({code})")
        self.call = call
        self.code = code
        self.message = message

    @property
    def would_block(self) -> bool:
        return self.code in WOULD_BLOCK


class EpollEvent(ctypes.Structure):
    _fields_ = [("fd", SRTSOCKET), ("events", ctypes.c_int)]


class _SockaddrStorage(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("data", ctypes.c_char * 126)]


class BStats(ctypes.Structure):
    """``SRT_TRACEBSTATS`` (``struct CBytePerfMon`` of libsrt 1.5)."""

    _fields_ = [
        ("msTimeStamp", ctypes.c_int64),
        ("pktSentTotal", ctypes.c_int64), ("pktRecvTotal", ctypes.c_int64),
        ("pktSndLossTotal", ctypes.c_int), ("pktRcvLossTotal", ctypes.c_int),
        ("pktRetransTotal", ctypes.c_int), ("pktSentACKTotal", ctypes.c_int),
        ("pktRecvACKTotal", ctypes.c_int), ("pktSentNAKTotal", ctypes.c_int),
        ("pktRecvNAKTotal", ctypes.c_int), ("usSndDurationTotal", ctypes.c_int64),
        ("pktSndDropTotal", ctypes.c_int), ("pktRcvDropTotal", ctypes.c_int),
        ("pktRcvUndecryptTotal", ctypes.c_int),
        ("byteSentTotal", ctypes.c_uint64), ("byteRecvTotal", ctypes.c_uint64),
        ("byteRcvLossTotal", ctypes.c_uint64), ("byteRetransTotal", ctypes.c_uint64),
        ("byteSndDropTotal", ctypes.c_uint64), ("byteRcvDropTotal", ctypes.c_uint64),
        ("byteRcvUndecryptTotal", ctypes.c_uint64),
        ("pktSent", ctypes.c_int64), ("pktRecv", ctypes.c_int64),
        ("pktSndLoss", ctypes.c_int), ("pktRcvLoss", ctypes.c_int),
        ("pktRetrans", ctypes.c_int), ("pktRcvRetrans", ctypes.c_int),
        ("pktSentACK", ctypes.c_int), ("pktRecvACK", ctypes.c_int),
        ("pktSentNAK", ctypes.c_int), ("pktRecvNAK", ctypes.c_int),
        ("mbpsSendRate", ctypes.c_double), ("mbpsRecvRate", ctypes.c_double),
        ("usSndDuration", ctypes.c_int64), ("pktReorderDistance", ctypes.c_int),
        ("pktRcvAvgBelatedTime", ctypes.c_double), ("pktRcvBelated", ctypes.c_int64),
        ("pktSndDrop", ctypes.c_int), ("pktRcvDrop", ctypes.c_int),
        ("pktRcvUndecrypt", ctypes.c_int),
        ("byteSent", ctypes.c_uint64), ("byteRecv", ctypes.c_uint64),
        ("byteRcvLoss", ctypes.c_uint64), ("byteRetrans", ctypes.c_uint64),
        ("byteSndDrop", ctypes.c_uint64), ("byteRcvDrop", ctypes.c_uint64),
        ("byteRcvUndecrypt", ctypes.c_uint64),
        ("usPktSndPeriod", ctypes.c_double), ("pktFlowWindow", ctypes.c_int),
        ("pktCongestionWindow", ctypes.c_int), ("pktFlightSize", ctypes.c_int),
        ("msRTT", ctypes.c_double), ("mbpsBandwidth", ctypes.c_double),
        ("byteAvailSndBuf", ctypes.c_int), ("byteAvailRcvBuf", ctypes.c_int),
        ("mbpsMaxBW", ctypes.c_double), ("byteMSS", ctypes.c_int),
        ("pktSndBuf", ctypes.c_int), ("byteSndBuf", ctypes.c_int),
        ("msSndBuf", ctypes.c_int), ("msSndTsbPdDelay", ctypes.c_int),
        ("pktRcvBuf", ctypes.c_int), ("byteRcvBuf", ctypes.c_int),
        ("msRcvBuf", ctypes.c_int), ("msRcvTsbPdDelay", ctypes.c_int),
        ("pktSndFilterExtraTotal", ctypes.c_int), ("pktRcvFilterExtraTotal", ctypes.c_int),
        ("pktRcvFilterSupplyTotal", ctypes.c_int), ("pktRcvFilterLossTotal", ctypes.c_int),
        ("pktSndFilterExtra", ctypes.c_int), ("pktRcvFilterExtra", ctypes.c_int),
        ("pktRcvFilterSupply", ctypes.c_int), ("pktRcvFilterLoss", ctypes.c_int),
        ("pktReorderTolerance", ctypes.c_int),
        ("pktSentUniqueTotal", ctypes.c_int64), ("pktRecvUniqueTotal", ctypes.c_int64),
        ("byteSentUniqueTotal", ctypes.c_uint64), ("byteRecvUniqueTotal", ctypes.c_uint64),
        ("pktSentUnique", ctypes.c_int64), ("pktRecvUnique", ctypes.c_int64),
        ("byteSentUnique", ctypes.c_uint64), ("byteRecvUnique", ctypes.c_uint64),
    ]

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name, _ in self._fields_}


# int (*)(void* opaque, SRTSOCKET ns, int hsversion, const struct sockaddr* peer, const char* sid)
ListenCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, SRTSOCKET, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
)


# void (*)(void* opaque, int level, const char* file, int line, const char* area, const char* msg)
LogHandler = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
    ctypes.c_char_p
)


def _sockaddr(host: str, port: int) -> tuple[ctypes.Array[ctypes.c_char], int]:
    """A ``struct sockaddr_in``/``sockaddr_in6`` for an IP literal (empty = 0.0.0.0)."""
    ip = ipaddress.ip_address(host or "0.0.0.0")
    if ip.version == 4:
        raw = (socket.AF_INET.to_bytes(2, "little") + port.to_bytes(2, "big") + ip.packed
               + bytes(8))
    else:
        raw = (socket.AF_INET6.to_bytes(2, "little") + port.to_bytes(2, "big") + bytes(4)
               + ip.packed + bytes(4))
    buf = ctypes.create_string_buffer(raw, len(raw))
    return buf, len(raw)


def sockaddr_to_str(address: int | None) -> str:
    """``"ip:port"`` (``"[v6]:port"``) for a ``struct sockaddr*`` (as an int), ``""`` if unknown."""
    if not address:
        return ""
    family = ctypes.c_ushort.from_address(address).value
    if family == socket.AF_INET:
        raw = ctypes.string_at(address, 16)
        return f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}:{int.from_bytes(raw[2:4], 'big')}"
    if family == socket.AF_INET6:
        raw = ctypes.string_at(address, 28)
        ip = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        return f"[{ip}]:{int.from_bytes(raw[2:4], 'big')}"
    return ""


class LibSrt:
    """The loaded library (use :func:`load`)."""

    def __init__(self, lib: ctypes.CDLL, path: str) -> None:
        self._lib = lib
        self.path = path
        c = ctypes
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "srt_startup": (c.c_int, []),
            "srt_cleanup": (c.c_int, []),
            "srt_getversion": (c.c_uint32, []),
            "srt_setloglevel": (None, [c.c_int]),
            "srt_setloghandler": (None, [c.c_void_p, LogHandler]),
            "srt_setlogflags": (None, [c.c_int]),
            "srt_create_socket": (SRTSOCKET, []),
            "srt_bind": (c.c_int, [SRTSOCKET, c.c_void_p, c.c_int]),
            "srt_listen": (c.c_int, [SRTSOCKET, c.c_int]),
            "srt_accept": (SRTSOCKET, [SRTSOCKET, c.c_void_p, c.POINTER(c.c_int)]),
            "srt_connect": (c.c_int, [SRTSOCKET, c.c_void_p, c.c_int]),
            "srt_close": (c.c_int, [SRTSOCKET]),
            "srt_getsockname": (c.c_int, [SRTSOCKET, c.c_void_p, c.POINTER(c.c_int)]),
            "srt_getpeername": (c.c_int, [SRTSOCKET, c.c_void_p, c.POINTER(c.c_int)]),
            "srt_setsockflag": (c.c_int, [SRTSOCKET, c.c_int, c.c_void_p, c.c_int]),
            "srt_getsockflag": (c.c_int, [SRTSOCKET, c.c_int, c.c_void_p, c.POINTER(c.c_int)]),
            "srt_recvmsg": (c.c_int, [SRTSOCKET, c.c_char_p, c.c_int]),
            "srt_sendmsg": (c.c_int, [SRTSOCKET, c.c_char_p, c.c_int, c.c_int, c.c_int]),
            "srt_getlasterror": (c.c_int, [c.POINTER(c.c_int)]),
            "srt_getlasterror_str": (c.c_char_p, []),
            "srt_clearlasterror": (None, []),
            "srt_getsockstate": (c.c_int, [SRTSOCKET]),
            "srt_getrejectreason": (c.c_int, [SRTSOCKET]),
            "srt_setrejectreason": (c.c_int, [SRTSOCKET, c.c_int]),
            "srt_bstats": (c.c_int, [SRTSOCKET, c.POINTER(BStats), c.c_int]),
            "srt_listen_callback": (c.c_int, [SRTSOCKET, ListenCallback, c.c_void_p]),
            "srt_epoll_create": (c.c_int, []),
            "srt_epoll_set": (c.c_int32, [c.c_int, c.c_int32]),
            "srt_epoll_add_usock": (c.c_int, [c.c_int, SRTSOCKET, c.POINTER(c.c_int)]),
            "srt_epoll_update_usock": (c.c_int, [c.c_int, SRTSOCKET, c.POINTER(c.c_int)]),
            "srt_epoll_remove_usock": (c.c_int, [c.c_int, SRTSOCKET]),
            "srt_epoll_uwait": (c.c_int, [c.c_int, c.POINTER(EpollEvent), c.c_int, c.c_int64]),
            "srt_epoll_release": (c.c_int, [c.c_int]),
        }
        for name, (restype, argtypes) in sigs.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes

    # -- errors ----------------------------------------------------------------------------

    def _error(self, call: str) -> SrtError:
        code = self._lib.srt_getlasterror(None)
        raw = self._lib.srt_getlasterror_str()
        message = raw.decode("utf-8", "replace") if raw else "unknown error"
        self._lib.srt_clearlasterror()
        return SrtError(call, code, message)

    def _check(self, call: str, result: int) -> int:
        if result == SRT_ERROR:
            raise self._error(call)
        return result

    # -- library ---------------------------------------------------------------------------

    @property
    def version(self) -> str:
        v = self._lib.srt_getversion()
        return f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"

    def set_log_handler(self, handler: Any) -> None:
        """Install a ``LogHandler`` for the whole process (keep a reference to it forever)."""
        self._lib.srt_setloghandler(None, handler)

    def set_log_flags(self, flags: int) -> None:
        self._lib.srt_setlogflags(flags)

    def startup(self) -> None:
        """``srt_startup``: counted; libsrt runs its own threads until the matching cleanup."""
        if self._lib.srt_startup() < 0:
            raise self._error("srt_startup")

    def cleanup(self) -> None:
        """``srt_cleanup``: the last one closes every socket and joins libsrt's threads."""
        self._lib.srt_cleanup()

    def set_log_level(self, level: int) -> None:
        self._lib.srt_setloglevel(level)

    # -- sockets ---------------------------------------------------------------------------

    def create_socket(self) -> int:
        sock = self._lib.srt_create_socket()
        if sock == SRT_INVALID_SOCK:
            raise self._error("srt_create_socket")
        return int(sock)

    def bind(self, sock: int, host: str, port: int) -> None:
        buf, size = _sockaddr(host, port)
        self._check("srt_bind", self._lib.srt_bind(sock, buf, size))

    def listen(self, sock: int, backlog: int) -> None:
        self._check("srt_listen", self._lib.srt_listen(sock, backlog))

    def connect(self, sock: int, host: str, port: int) -> None:
        buf, size = _sockaddr(host, port)
        self._check("srt_connect", self._lib.srt_connect(sock, buf, size))

    def accept(self, sock: int) -> tuple[int, str]:
        """``(new socket, "ip:port" of the peer)``; SrtError (would_block) when none waits."""
        storage = _SockaddrStorage()
        size = ctypes.c_int(ctypes.sizeof(storage))
        new = self._lib.srt_accept(sock, ctypes.byref(storage), ctypes.byref(size))
        if new == SRT_INVALID_SOCK:
            raise self._error("srt_accept")
        return int(new), sockaddr_to_str(ctypes.addressof(storage))

    def close(self, sock: int) -> None:
        """Close ``sock``; errors (already closed) are ignored."""
        if self._lib.srt_close(sock) == SRT_ERROR:
            self._lib.srt_clearlasterror()

    def sockname(self, sock: int) -> str:
        storage = _SockaddrStorage()
        size = ctypes.c_int(ctypes.sizeof(storage))
        self._check("srt_getsockname",
                    self._lib.srt_getsockname(sock, ctypes.byref(storage), ctypes.byref(size)))
        return sockaddr_to_str(ctypes.addressof(storage))

    def state(self, sock: int) -> int:
        return int(self._lib.srt_getsockstate(sock))

    def reject_reason(self, sock: int) -> int:
        return int(self._lib.srt_getrejectreason(sock))

    def set_reject_reason(self, sock: int, reason: int) -> None:
        self._lib.srt_setrejectreason(sock, reason)

    # -- options ---------------------------------------------------------------------------

    def set_int(self, sock: int, opt: int, value: int) -> None:
        v = ctypes.c_int(value)
        self._check("srt_setsockflag",
                    self._lib.srt_setsockflag(sock, opt, ctypes.byref(v), ctypes.sizeof(v)))

    def set_bool(self, sock: int, opt: int, value: bool) -> None:
        v = ctypes.c_bool(value)
        self._check("srt_setsockflag",
                    self._lib.srt_setsockflag(sock, opt, ctypes.byref(v), ctypes.sizeof(v)))

    def set_str(self, sock: int, opt: int, value: str) -> None:
        raw = value.encode()
        self._check("srt_setsockflag",
                    self._lib.srt_setsockflag(sock, opt, ctypes.c_char_p(raw), len(raw)))

    def get_int(self, sock: int, opt: int) -> int:
        v = ctypes.c_int(0)
        size = ctypes.c_int(ctypes.sizeof(v))
        self._check("srt_getsockflag",
                    self._lib.srt_getsockflag(sock, opt, ctypes.byref(v), ctypes.byref(size)))
        return v.value

    def get_str(self, sock: int, opt: int) -> str:
        buf = ctypes.create_string_buffer(768)
        size = ctypes.c_int(len(buf))
        self._check("srt_getsockflag",
                    self._lib.srt_getsockflag(sock, opt, buf, ctypes.byref(size)))
        return buf.raw[: size.value].decode("utf-8", "replace")

    # -- data ------------------------------------------------------------------------------

    def recvmsg(self, sock: int, buf: ctypes.Array[ctypes.c_char]) -> int:
        """Read one message into ``buf``; the byte count. SrtError (would_block / lost)."""
        n = self._lib.srt_recvmsg(sock, buf, len(buf))
        if n == SRT_ERROR:
            raise self._error("srt_recvmsg")
        return int(n)

    def sendmsg(self, sock: int, data: bytes) -> int:
        n = self._lib.srt_sendmsg(sock, data, len(data), -1, 0)
        if n == SRT_ERROR:
            raise self._error("srt_sendmsg")
        return int(n)

    def bstats(self, sock: int, clear: bool = False) -> BStats:
        stats = BStats()
        self._check("srt_bstats", self._lib.srt_bstats(sock, ctypes.byref(stats), int(clear)))
        return stats

    def listen_callback(self, sock: int, callback: Any) -> None:
        """Install a ``ListenCallback`` (keep a reference to it while ``sock`` lives)."""
        self._check("srt_listen_callback", self._lib.srt_listen_callback(sock, callback, None))

    # -- epoll -----------------------------------------------------------------------------

    def epoll_create(self) -> int:
        eid = self._check("srt_epoll_create", self._lib.srt_epoll_create())
        self._lib.srt_epoll_set(eid, SRT_EPOLL_ENABLE_EMPTY)
        return eid

    def epoll_add(self, eid: int, sock: int, events: int) -> None:
        ev = ctypes.c_int(events)
        self._check("srt_epoll_add_usock", self._lib.srt_epoll_add_usock(eid, sock, ctypes.byref(ev)))

    def epoll_update(self, eid: int, sock: int, events: int) -> None:
        ev = ctypes.c_int(events)
        self._check("srt_epoll_update_usock",
                    self._lib.srt_epoll_update_usock(eid, sock, ctypes.byref(ev)))

    def epoll_remove(self, eid: int, sock: int) -> None:
        if self._lib.srt_epoll_remove_usock(eid, sock) == SRT_ERROR:
            self._lib.srt_clearlasterror()

    def epoll_wait(self, eid: int, events: ctypes.Array[EpollEvent], timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for events; the number filled into ``events`` (0 on timeout)."""
        n = self._lib.srt_epoll_uwait(eid, events, len(events), timeout_ms)
        if n == SRT_ERROR:
            err = self._error("srt_epoll_uwait")
            if err.would_block:
                return 0
            raise err
        return int(n)

    def epoll_release(self, eid: int) -> None:
        if self._lib.srt_epoll_release(eid) == SRT_ERROR:
            self._lib.srt_clearlasterror()


_loaded: LibSrt | None = None
_load_lock = threading.Lock()


def load(names: tuple[str, ...] = LIBRARY_NAMES,
         finder: Callable[[str], str | None] = ctypes.util.find_library) -> LibSrt:
    """The process-wide :class:`LibSrt` (loaded and ``srt_startup``-ed on first use).

    Raises SrtUnavailable naming what was tried when no library loads.
    """
    global _loaded
    with _load_lock:
        if _loaded is not None and names == LIBRARY_NAMES:
            return _loaded
        candidates = list(names)
        found = finder("srt")
        if found:
            candidates.append(found)
        errors: list[str] = []
        for name in candidates:
            try:
                lib = ctypes.CDLL(name)
            except OSError as exc:
                errors.append(str(exc))
                continue
            try:
                srt = LibSrt(lib, name)
            except AttributeError as exc:
                errors.append(f"{name}: {exc}")
                continue
            if lib.srt_startup() < 0:
                errors.append(f"{name}: srt_startup failed")
                continue
            lib.srt_cleanup()  # users pair startup()/cleanup() around their sockets
            srt.set_log_level(LOG_CRIT)
            if names == LIBRARY_NAMES:
                _loaded = srt
            return srt
        raise SrtUnavailable(
            "libsrt not found (install Debian's libsrt1.5-openssl): " + "; ".join(errors)
        )
