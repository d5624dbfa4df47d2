"""libsrt's own log, filtered into Python logging (``trio_core.srt.libsrt``).

libsrt logs from its internal threads through one process-wide handler. :func:`install`
sets it once (level NOTICE, message text only) and keeps the ctypes callback alive for the
life of the process. :func:`classify` (pure) decides what a line becomes:

* handshakes libsrt refuses as invalid (garbage, bogus handshakes: "Listener managed the
  connection request from ADDR result:INVALID", also after a refusal by the server's own
  checks) → WARNING "SRT handshake from ADDR rejected";
* warnings and errors (e.g. "rsp(REJECT): 1010 - Incorrect passphrase") → WARNING, except
  the non-blocking ``srt_accept`` "no pending connection" the server provokes on purpose;
* everything else (per-connection NOTICE chatter) → ignored.

Kept lines pass a :class:`~trio_core.util.rate_limit.RateLimit` (10/s; the next line says how many were
suppressed), so a flood of garbage costs at most a few lines a second. The callback never
raises into C.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from trio_core.srt.binding import LibSrt, LogHandler
from trio_core.util.rate_limit import RateLimit

__all__ = ["classify", "install"]

log = logging.getLogger("trio_core.srt.libsrt")

LOG_ERR = 3
LOG_WARNING = 4
LOG_NOTICE = 5
LINES_PER_SECOND = 10

_INVALID_RE = re.compile(r"connection request from: (\S+) result:INVALID")
_IGNORED = ("srt_accept: no pending connection",)

_installed: Any = None
_limit = RateLimit(LINES_PER_SECOND)


def classify(level: int, area: str, message: str) -> str | None:
    """The log text for a libsrt line, or None to ignore it."""
    text = message.strip().lstrip(": ")
    match = _INVALID_RE.search(text)
    if match:
        return f"SRT handshake from {match.group(1)} rejected"
    if level <= LOG_WARNING and not any(ignored in text for ignored in _IGNORED):
        return f"libsrt: {text}"
    return None


def _handle(_opaque: Any, level: int, _file: Any, _line: int, area: bytes | None,
            message: bytes | None) -> None:
    try:
        text = classify(level, (area or b"").decode("utf-8", "replace"),
                        (message or b"").decode("utf-8", "replace"))
        if text is None:
            return
        suppressed = _limit.take(time.monotonic())
        if suppressed is None:
            return
        if suppressed:
            text += f" ({suppressed} more libsrt log lines suppressed)"
        log.warning("%s", text)
    except BaseException:  # never raise into libsrt's thread
        pass


def install(lib: LibSrt) -> None:
    """Route libsrt's log through :func:`classify` (idempotent, process-wide)."""
    global _installed
    if _installed is not None:
        return
    _installed = LogHandler(_handle)
    lib.set_log_handler(_installed)
    lib.set_log_flags(15)  # no time, thread name, severity or newline: the text only
    lib.set_log_level(LOG_NOTICE)
