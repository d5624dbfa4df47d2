"""SRT stream ids as datarhei Core parses them (``srt/srt.go``): pure functions, no I/O.

Two forms:

* ``<resource>[,mode:publish|request][,token:<t>]`` — the keys are found with Core's regular
  expression ``,(token|mode):(.+)``: the resource is everything before the first match, each
  value runs to the next ``,token:``/``,mode:``. ``mode`` defaults to ``request``.
* legacy ``#!:r=<resource>,m=<mode>,token=<t>`` (comma separated ``key=value``; unknown keys
  and pairs without ``=`` are skipped; no default mode).

:func:`parse_stream_id` never raises; validation of the result (empty resource, unknown mode)
is :func:`check_stream_id`'s job, which raises :class:`StreamIdRefused` with Core's status
word (``INVALID``/``FORBIDDEN``) and log message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["StreamId", "StreamIdRefused", "check_stream_id", "parse_stream_id"]

_KEY_RE = re.compile(r",(token|mode):(.+)", re.DOTALL)
MAX_STREAM_ID = 512  # libsrt's own limit on SRTO_STREAMID


@dataclass(frozen=True)
class StreamId:
    """A parsed stream id: ``mode`` is ``publish``/``request`` (or whatever was sent)."""

    resource: str
    mode: str
    token: str


class StreamIdRefused(ValueError):
    """A connection must be rejected: ``status`` as Core logs it, ``message`` says why."""

    def __init__(self, status: str, message: str, resource: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.resource = resource


def _parse_legacy(text: str) -> StreamId:
    resource = mode = token = ""
    for pair in text[3:].split(","):
        key, sep, value = pair.partition("=")
        if not sep:
            continue
        if key == "m":
            mode = value
        elif key == "r":
            resource = value
        elif key == "token":
            token = value
    return StreamId(resource=resource, mode=mode, token=token)


def parse_stream_id(text: str) -> StreamId:
    """Parse ``text`` the way Core's ``parseStreamId`` does."""
    if text.startswith("#!:"):
        return _parse_legacy(text)
    results: dict[str, str] = {}
    id_end = -1
    value = text
    key = ""
    while True:
        match = _KEY_RE.search(value)
        if match is None:
            break
        if id_end < 0:
            id_end = match.start(1) - 1
        if key:
            results[key] = value[: match.start(1) - 1]
        key = match.group(1)
        value = match.group(2)
        results[key] = value
    if id_end < 0:
        id_end = len(text)
    return StreamId(
        resource=text[:id_end], mode=results.get("mode", "request"), token=results.get("token", "")
    )


def check_stream_id(text: str, *, token: str) -> StreamId:
    """Parse and validate a caller's stream id against the server's ``token``.

    Raises StreamIdRefused: ``INVALID`` (empty/oversized resource, unknown mode) or
    ``FORBIDDEN`` (token required / invalid token), with Core's messages.
    """
    if len(text) > MAX_STREAM_ID:
        raise StreamIdRefused("INVALID", "stream id too long")
    sid = parse_stream_id(text)
    if not sid.resource:
        raise StreamIdRefused("INVALID", "stream resource not provided")
    if sid.mode not in ("publish", "request"):
        raise StreamIdRefused("INVALID", "invalid connection mode", sid.resource)
    if token and sid.token != token:
        message = "token required" if not sid.token else "invalid token"
        raise StreamIdRefused("FORBIDDEN", message, sid.resource)
    return sid
