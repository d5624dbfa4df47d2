"""Typed errors of the ``rtmp`` package.

Every parser in ``rtmp`` raises :class:`RtmpError` (or a subclass) for malformed or hostile
input; no other exception (IndexError, struct.error, UnicodeDecodeError, RecursionError, …)
may escape on bad wire data.
"""

from __future__ import annotations

__all__ = ["AmfError", "LimitExceeded", "RtmpError"]


class RtmpError(ValueError):
    """Malformed wire input or a protocol violation; the connection should be dropped.

    ``reason`` is a short, stable key suitable for a log line or a drop counter (e.g.
    ``"handshake-version"``, ``"chunk-size"``); ``detail`` is free text.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class AmfError(RtmpError):
    """Malformed AMF0 data (reasons start with ``amf-``)."""


class LimitExceeded(RtmpError):
    """A peer exceeded a configured limit (message size, chunk streams, streams, …)."""
