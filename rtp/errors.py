"""Typed errors of the ``rtp`` package.

Every parser in ``rtp`` raises one of these for malformed input; no other exception
(IndexError, struct.error, UnicodeDecodeError, ...) may escape on bad wire data.
"""

from __future__ import annotations

__all__ = ["DtlsError", "NoCommonCodec", "Overloaded", "ParseError", "SdpError", "SourceNotReady"]


class ParseError(ValueError):
    """Malformed wire input.

    ``reason`` is a short, stable key suitable for a drop counter (e.g. ``"stun-short"``,
    ``"srtp-auth"``); ``detail`` is free text for logs.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class SdpError(ValueError):
    """A bad SDP offer/description; the message says what was wrong (e.g. "missing a=ice-ufrag")."""


class NoCommonCodec(SdpError):
    """Nothing offered matches the source's codecs (maps to HTTP 406)."""


class DtlsError(Exception):
    """Fatal DTLS failure (alert, fingerprint mismatch, handshake error); the endpoint is dead."""


class SourceNotReady(Exception):
    """The source has no codec parameters yet (its producer is not live): retry later."""


class Overloaded(Exception):
    """A new viewer would exceed an admission limit (maps to HTTP 503 + ``Retry-After``).

    ``limit`` names the setting-like limit that was hit (e.g. ``"max_pending_per_client"``),
    ``retry_after`` is a hint in whole seconds.
    """

    def __init__(self, limit: str, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.limit = limit
        self.retry_after = retry_after
