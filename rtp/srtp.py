"""SRTP/SRTCP protection for one DTLS-SRTP association, over pylibsrtp.

Sans-IO and synchronous. One :class:`SrtpSession` per peer: an outbound libsrtp session
(``SSRC_ANY_OUTBOUND``, ``allow_repeat_tx`` so NACKed packets can be resent) keyed with the
endpoint's tx key, and an inbound one (``SSRC_ANY_INBOUND``) keyed with its rx key.
Both DTLS-SRTP profiles we offer are supported: AEAD_AES_128_GCM and AES128_CM_SHA1_80.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pylibsrtp
from pylibsrtp import Policy, Session

from .errors import ParseError

if TYPE_CHECKING:  # only a type here: the DTLS stack is loaded with the first Peer
    from .dtls import SrtpKeys

__all__ = ["DEALLOC_ADDRESS", "MAX_PROTECT_SIZE", "PROTECT_ADDRESS", "SrtpSession", "carry_roc",
           "new_tx_context", "stream_roc"]

#: Largest plaintext packet pylibsrtp can protect (its 1500-byte buffer minus trailers).
MAX_PROTECT_SIZE = 1356


#: The libsrtp 2 signature ``rtp/_fanout.c`` calls (libsrtp 3 changed it).
PROTECT_SIGNATURE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"


def _protect_address() -> int:
    """The address of libsrtp's ``srtp_protect`` inside pylibsrtp; 0 when unavailable or
    when its signature is not :data:`PROTECT_SIGNATURE` (the C fan-out is then not used)."""
    try:
        from pylibsrtp import _binding

        ffi = _binding.ffi
        func = ffi.addressof(_binding.lib, "srtp_protect")
        if ffi.typeof(func).cname != PROTECT_SIGNATURE:
            return 0
        return int(ffi.cast("uintptr_t", func))
    except (AttributeError, ImportError, TypeError):
        return 0


#: ``srtp_protect`` for the C fan-out (``rtp/_fanout.c``); 0 when pylibsrtp hides it.
PROTECT_ADDRESS = _protect_address()


#: The libsrtp 2 signature of ``srtp_dealloc`` (the C fan-out frees the sessions it owns).
DEALLOC_SIGNATURE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *)"


def _dealloc_address() -> int:
    try:
        from pylibsrtp import _binding

        ffi = _binding.ffi
        func = ffi.addressof(_binding.lib, "srtp_dealloc")
        if ffi.typeof(func).cname != DEALLOC_SIGNATURE:
            return 0
        return int(ffi.cast("uintptr_t", func))
    except (AttributeError, ImportError, TypeError):
        return 0


#: ``srtp_dealloc`` for the C fan-out; 0 when pylibsrtp hides it (the C fan-out is then
#: not used: it could not free the sessions it owns).
DEALLOC_ADDRESS = _dealloc_address() if PROTECT_ADDRESS else 0


def new_tx_context(keys: SrtpKeys) -> int:
    """A new outbound libsrtp session for RTP only (same keys and policy as
    :class:`SrtpSession`'s), returned as its raw address: the caller **owns** it and must
    hand it to something that frees it with ``srtp_dealloc`` exactly once (``rtp._fanout.Viewer``).

    The session's keystream for RTP is separate from SRTCP's, so this session (used by one
    fan-out worker for the viewer's RTP) and :class:`SrtpSession` (used on the trio thread
    for its SRTCP: sender reports, BYE) never share state or keystream.
    Raises ``pylibsrtp.Error`` when libsrtp refuses the keys."""
    from pylibsrtp import _binding

    policy = Policy(key=keys.tx_key + keys.tx_salt, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                    srtp_profile=keys.profile)
    policy.allow_repeat_tx = True
    ffi, lib = _binding.ffi, _binding.lib
    ptr = ffi.new("srtp_t *")
    rc = lib.srtp_create(ptr, policy._policy)  # type: ignore[attr-defined]
    if rc != lib.srtp_err_status_ok:
        raise pylibsrtp.Error(_error_text(rc))
    return int(ffi.cast("uintptr_t", ptr[0]))


def _libsrtp_symbol(name: str) -> Any:
    """libsrtp's exported C function ``name`` inside pylibsrtp's binding (ctypes), or None."""
    try:
        import ctypes

        from pylibsrtp import _binding

        return getattr(ctypes.CDLL(_binding.__file__), name)
    except (AttributeError, ImportError, OSError):
        return None


def stream_roc(ctx: int, ssrc: int) -> int | None:
    """The rollover counter (RFC 3711 ROC) of the outbound RTP stream ``ssrc`` in the libsrtp
    session at address ``ctx``; None when the session has no such stream. The caller makes
    sure no other thread uses the session meanwhile."""
    import ctypes

    func = _libsrtp_symbol("srtp_get_stream_roc")
    if func is None or not ctx:
        return None
    roc = ctypes.c_uint32(0)
    rc = func(ctypes.c_void_p(ctx), ctypes.c_uint32(ssrc), ctypes.byref(roc))
    return int(roc.value) if rc == 0 else None


def carry_roc(session: SrtpSession, ssrc: int, roc: int) -> bool:
    """Make ``session``'s next protected RTP packet of ``ssrc`` use rollover counter ``roc``
    (a stream another session sent so far continues here with the same packet index, so no
    keystream is used twice and the receiver's index estimate holds). False when libsrtp
    refuses (no such stream and none could be made)."""
    import ctypes

    func = _libsrtp_symbol("srtp_set_stream_roc")
    ctx = session.context_address
    if func is None or not ctx:
        return False
    args = (ctypes.c_void_p(ctx), ctypes.c_uint32(ssrc), ctypes.c_uint32(roc))
    if func(*args) == 0:
        return True
    # the stream does not exist yet in this session: a first (never sent) packet makes it
    try:
        session.protect(bytes([0x80, 0, 0, 0, 0, 0, 0, 0]) + ssrc.to_bytes(4, "big"))
    except ParseError:
        return False
    return func(*args) == 0


def _context_address(session: Session) -> int:
    """The address of ``session``'s libsrtp context (0 when unavailable)."""
    try:
        from pylibsrtp import _binding

        return int(_binding.ffi.cast("uintptr_t", session._srtp[0]))  # type: ignore[attr-defined]
    except (AttributeError, ImportError, TypeError, IndexError):
        return 0


def _reason(exc: pylibsrtp.Error, default: str) -> str:
    text = str(exc)
    if "authentication" in text:
        return "srtp-auth"
    if "replay" in text or "index" in text:
        return "srtp-replay"
    return default


def _error_text(rc: int) -> str:
    errors = getattr(pylibsrtp, "ERRORS", [])
    return str(errors[rc]) if 0 <= rc < len(errors) else f"libsrtp error {rc}"


def _fast_protect(session: Session) -> Callable[[bytes], bytes] | None:
    """``session.protect`` without pylibsrtp's per-call wrapper cost (a fresh ``int *``,
    two extra calls): the same libsrtp call on the session's own buffer. Returns None when
    this pylibsrtp does not have the expected internals (then the public method is used).
    """
    try:
        from pylibsrtp import _binding

        lib, ffi = _binding.lib, _binding.ffi
        ctx = session._srtp[0]  # type: ignore[attr-defined]
        cdata = session._cdata  # type: ignore[attr-defined]
        buffer = session._buffer  # type: ignore[attr-defined]
        srtp_protect = lib.srtp_protect
        ok = lib.srtp_err_status_ok
        limit = len(cdata) - pylibsrtp.SRTP_MAX_TRAILER_LEN
    except (AttributeError, ImportError, TypeError):
        return None
    len_p = ffi.new("int *")

    def protect(rtp: bytes, _session: Session = session) -> bytes:  # keeps ctx alive
        size = len(rtp)
        if size > limit:
            raise ValueError("packet is too long")
        buffer[0:size] = rtp
        len_p[0] = size
        rc = srtp_protect(ctx, cdata, len_p)
        if rc != ok:
            raise pylibsrtp.Error(_error_text(rc))
        return buffer[0:len_p[0]]

    return protect


class SrtpSession:
    """Protect outgoing and unprotect incoming SRTP/SRTCP with the keys from DTLS.

    All methods take and return whole packets as ``bytes``. ``unprotect*`` raise
    ParseError("srtp-auth" | "srtp-replay" | "srtp-short" | "srtp-error") on failure;
    ``protect*`` raise ParseError("srtp-protect", ...) (e.g. packet too long or a sequence
    number that libsrtp rejects).
    """

    def __init__(self, keys: SrtpKeys, *, rx_window: int = 0) -> None:
        """``rx_window``: the inbound replay window in packets (0: libsrtp's 128); a
        publisher's retransmissions may arrive further back than that."""
        self.keys = keys
        tx = Policy(
            key=keys.tx_key + keys.tx_salt,
            ssrc_type=Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=keys.profile,
        )
        tx.allow_repeat_tx = True
        rx = Policy(
            key=keys.rx_key + keys.rx_salt,
            ssrc_type=Policy.SSRC_ANY_INBOUND,
            srtp_profile=keys.profile,
        )
        if rx_window:
            rx.window_size = rx_window
        self._tx = Session(tx)
        self._rx = Session(rx)
        self._tx_protect = _fast_protect(self._tx) or self._tx.protect
        #: the outbound libsrtp context, for the C fan-out (valid while this object lives)
        self.context_address = _context_address(self._tx)
        self._tx_protect_rtcp = self._tx.protect_rtcp

    @property
    def raw_protect(self) -> Callable[[bytes], bytes]:
        """libsrtp's own protect (the per-viewer hot path): takes ``bytes`` only and raises
        ``pylibsrtp.Error``/``ValueError`` instead of ParseError."""
        return self._tx_protect

    def protect(self, rtp: bytes) -> bytes:
        """Encrypt and authenticate one RTP packet (at most ``MAX_PROTECT_SIZE`` bytes)."""
        try:
            return self._tx_protect(rtp if type(rtp) is bytes else bytes(rtp))
        except (pylibsrtp.Error, ValueError) as exc:  # ValueError: packet too long
            raise ParseError("srtp-protect", str(exc)) from exc

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        """Encrypt and authenticate one (compound) RTCP packet."""
        try:
            return self._tx_protect_rtcp(rtcp if type(rtcp) is bytes else bytes(rtcp))
        except (pylibsrtp.Error, ValueError) as exc:
            raise ParseError("srtp-protect", str(exc)) from exc

    def unprotect(self, srtp: bytes) -> bytes:
        """Authenticate and decrypt one SRTP packet."""
        if len(srtp) < 12:
            raise ParseError("srtp-short", f"{len(srtp)} bytes")
        return self._unprotect(self._rx.unprotect, srtp)

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        """Authenticate and decrypt one SRTCP packet."""
        if len(srtcp) < 8:
            raise ParseError("srtp-short", f"{len(srtcp)} bytes")
        return self._unprotect(self._rx.unprotect_rtcp, srtcp)

    @staticmethod
    def _unprotect(func: Callable[[bytes], bytes], data: bytes) -> bytes:
        try:
            return func(data if type(data) is bytes else bytes(data))
        except pylibsrtp.Error as exc:
            raise ParseError(_reason(exc, "srtp-error"), str(exc)) from exc
        except ValueError as exc:
            raise ParseError("srtp-error", str(exc)) from exc
